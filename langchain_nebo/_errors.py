"""The one place where ``nebo_core`` errors become LangChain ``ModelError`` subclasses.

Each translated class inherits from both the langchain-core ``ModelError`` subclass that
names the condition (so ``with_retry()`` and agent retry middleware read ``is_retryable``)
and the original ``nebo_core`` error class (so ``except NeboBudgetExhausted`` keeps
working). The original error is also the ``__cause__``. Budget exhaustion is a
``ModelRateLimitError`` (it arrives as a 429) that is *not* retryable::

    NeboError (nebo_core)                 ->  ModelError subclass (langchain-core)
    NeboAuthenticationError 401 / 403     ->  ModelAuthenticationError / ModelPermissionDeniedError
    NeboBudgetExhausted                   ->  ModelRateLimitError, is_retryable=False
    NeboRateLimited                       ->  ModelRateLimitError (retryable)
    NeboUpstreamError, NeboStreamError    ->  ModelAPIError (retryable only where the core says so)
    NeboConnectionError                   ->  ModelConnectionError / ModelTimeoutError (retryable)
    NeboContextLengthError                ->  ContextOverflowError
    NeboBadRequestError 400 / 404         ->  ModelInvalidRequestError / ModelNotFoundError
"""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboConnectionError,
    NeboContextLengthError,
    NeboError,
    NeboRateLimited,
    NeboStreamError,
    NeboStreamTruncated,
    NeboTimeoutError,
    NeboUpstreamError,
)


class NeboModelAuthenticationError(ModelAuthenticationError, NeboAuthenticationError):
    """The Nebo token was refused (401)."""


class NeboModelPermissionDeniedError(ModelPermissionDeniedError, NeboAuthenticationError):
    """The Nebo token lacks permission (403)."""


class NeboBudgetExhaustedError(ModelRateLimitError, NeboBudgetExhausted):
    """No Nebo budget left (or a local cap reached): never retried, unlike other 429s."""

    is_retryable = False


class NeboRateLimitError(ModelRateLimitError, NeboRateLimited):
    """A transient Nebo rate limit; ``retry_after`` says how long to wait."""

    is_retryable = True


class NeboAPIError(ModelAPIError, NeboUpstreamError):
    """Nebo or the provider behind it failed (502, 5xx)."""

    is_retryable = True


class NeboStreamAPIError(ModelAPIError, NeboStreamError):
    """An error event inside a 200 stream that is not a rate limit."""

    is_retryable = False


class NeboStreamTruncatedError(ModelAPIError, NeboStreamTruncated):
    """The stream ended before a finish_reason; ``partial`` holds what arrived."""

    is_retryable = True


class NeboModelConnectionError(ModelConnectionError, NeboConnectionError):
    """Nebo could not be reached."""

    is_retryable = True


class NeboModelTimeoutError(ModelTimeoutError, NeboTimeoutError):
    """The request to Nebo timed out."""

    is_retryable = True


class NeboContextOverflowError(ContextOverflowError, NeboContextLengthError):
    """The prompt is longer than the model's context window."""


class NeboInvalidRequestError(ModelInvalidRequestError, NeboBadRequestError):
    """Nebo rejected the request as malformed (400, 422); also bad settings."""


class NeboModelNotFoundError(ModelNotFoundError, NeboBadRequestError):
    """Nebo does not know the requested model (404)."""


class NeboModelError(ModelError, NeboError):
    """Any other Nebo error."""


def _target(err: NeboError) -> type[NeboError]:
    # Most specific first: the core's subclasses share bases.
    if isinstance(err, NeboBudgetExhausted):
        return NeboBudgetExhaustedError
    if isinstance(err, NeboRateLimited):
        return NeboRateLimitError
    if isinstance(err, NeboAuthenticationError):
        return NeboModelPermissionDeniedError if err.status == 403 else NeboModelAuthenticationError
    if isinstance(err, NeboStreamTruncated):
        return NeboStreamTruncatedError
    if isinstance(err, NeboStreamError):
        return NeboStreamAPIError
    if isinstance(err, NeboUpstreamError):
        return NeboAPIError
    if isinstance(err, NeboConnectionError):
        return NeboModelTimeoutError if isinstance(err, NeboTimeoutError) else NeboModelConnectionError
    if isinstance(err, NeboContextLengthError):
        return NeboContextOverflowError
    if isinstance(err, (NeboBadRequestError, NeboConfigurationError)):
        return NeboModelNotFoundError if err.status == 404 else NeboInvalidRequestError
    return NeboModelError


def to_model_error(err: NeboError) -> NeboError:
    """The LangChain-facing twin of ``err``: same message and fields, a ``ModelError`` too.

    Already-translated errors come back unchanged. Raise the result ``from err``.
    """
    if isinstance(err, ModelError):
        return err
    cls = _target(err)
    twin = cls.__new__(cls)
    Exception.__init__(twin, err.message)
    twin.__dict__.update(err.__dict__)
    return twin


def translate(exc: BaseException) -> BaseException:
    """``exc`` as the error to raise at the LangChain boundary (non-Nebo errors pass through)."""
    if isinstance(exc, NeboError) and not isinstance(exc, ModelError):
        twin = to_model_error(exc)
        twin.__cause__ = exc
        return twin
    return exc


def budget_cap_error(spent_micro: int, cap_micro: int, **fields: Any) -> NeboBudgetExhaustedError:
    """The non-retryable error a callback cap raises before any request is sent."""
    return NeboBudgetExhaustedError(
        f"the Nebo callback cap is reached: {spent_micro} of {cap_micro} microdollars spent; "
        "raise max_cost_micro= on NeboBudgetCallbackHandler or start a new handler",
        window="cap",
        code="USAGE_LIMIT_EXCEEDED",
        **fields,
    )


RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    NeboRateLimited,
    NeboUpstreamError,
    NeboConnectionError,
    NeboStreamTruncated,
)
"""The transient Nebo errors, for a chain's ``with_retry(retry_if_exception_type=RETRYABLE_ERRORS)``:
a budget, authentication, bad-request or configuration error is never among them."""


def should_retry(error: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Whether LangChain's ``with_retry`` may retry ``error``: one of ``types``, and never a Nebo
    error that says it cannot succeed again (``is_retryable`` False: budget, auth, bad request)."""
    if isinstance(error, NeboError) and not error.is_retryable:
        return False
    return isinstance(error, types)
