"""The error bodies the emulator sends, shaped like OpenAI's (nebo-api.md section 9).

``ApiError`` is raised anywhere in request handling and turned into one JSON
response at the HTTP boundary, so every error carries the same budget headers.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error response: status, message, OpenAI ``type``, ``param`` and ``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` envelope."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    """A 400 naming the offending field."""
    return ApiError(400, message, param=param, code=code)


def missing(param: str) -> ApiError:
    """A 400 for a required field that is absent."""
    return ApiError(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def model_not_found(model: str) -> ApiError:
    """The 404 OpenAI gives for a model it does not know."""
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def usage_limit_exceeded() -> ApiError:
    """The terminal 429: every spend pool is empty (nebo-api.md sections 9.1 and 10)."""
    return ApiError(
        429,
        "Usage limit exceeded: your session or weekly budget and every credit pool are used up. "
        "Wait for the window to reset or add credits.",
        type="insufficient_quota",
        code="USAGE_LIMIT_EXCEEDED",
    )
