"""Build JSON values that validate against a JSON schema, filled with values found in the prompt.

Used for tool-call arguments and for ``response_format`` json_schema answers. A value
is looked for in this order: an explicit ``name: value`` in the prompt, a value of the
right shape (email, URL, date, number, quoted string, proper noun), then a schema
default, and last a placeholder that still validates. ``$ref``/``$defs``, ``anyOf``,
nullable types, enums and the usual bounds are honoured, since pydantic-made schemas
(what LangChain and LlamaIndex send) use them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nebo_emulator._text import STOPWORDS

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\w)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s\"'<>)]+")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^'\s][^']*)'|`([^`]+)`|“([^”]+)”")
_PATH = re.compile(
    r"(?<![\w:/])(?:~|\.{1,2})?/[\w./-]+|\b[\w-]+\.(?:py|md|txt|json|csv|yaml|yml|toml|js|ts|rs|go)\b"
)
_PROPER = re.compile(r"\b[A-Z][\w'-]*(?:[ \t]+[A-Z][\w'-]*)*")
_DIRECTIONS = {
    "origin": "from",
    "source": "from",
    "departure": "from",
    "start": "from",
    "sender": "from",
    "destination": "to",
    "target": "to",
    "arrival": "to",
    "recipient": "to",
    "end": "to",
}
_FREE_TEXT = (
    "query",
    "question",
    "text",
    "prompt",
    "input",
    "message",
    "content",
    "topic",
    "search",
    "keywords",
    "description",
    "body",
    "q",
    "request",
    "instruction",
    "task",
)


@dataclass
class Source:
    """The prompt text values are drawn from, and what has been used so far (so two fields differ)."""

    text: str
    fallback_text: str
    used: set[str] = field(default_factory=set)

    def take(self, candidates: list[str]) -> str | None:
        for candidate in candidates:
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate
        return candidates[0] if candidates else None


def build(schema: Mapping[str, Any], source: Source, *, fill_optional: bool) -> Any:
    """A value valid against ``schema`` (an object schema gives a dict), drawing on ``source``."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _value(schema, "", source, defs, fill_optional, 0)


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(8):
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        target = defs.get(ref.rsplit("/", 1)[-1])
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}} if target else {}
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if isinstance(o, dict) and o.get("type") != "null"), options[0])
            merged = {k: v for k, v in schema.items() if k != key}
            return _resolve({**merged, **chosen}, defs)
    return schema


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else "string"


def _value(
    schema: Mapping[str, Any], name: str, source: Source, defs: Mapping[str, Any], fill: bool, depth: int
) -> Any:
    schema = _resolve(schema, defs)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _enum(schema["enum"], source)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, source, defs, fill, depth) if depth < 6 else {}
    if kind == "array":
        items = schema.get("items")
        items = items if isinstance(items, dict) else {"type": "string"}
        count = max(int(schema.get("minItems", 1)), 1)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        return [_value(items, name, source, defs, fill, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, name, source, integer=kind == "integer")
    if kind == "boolean":
        found = explicit(source.text, name)
        if found is not None and found.lower() in ("true", "false", "yes", "no"):
            return found.lower() in ("true", "yes")
        return bool(schema.get("default", False))
    if kind == "null":
        return None
    return _string(schema, name, source)


def _object(
    schema: Mapping[str, Any], source: Source, defs: Mapping[str, Any], fill: bool, depth: int
) -> Any:
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = [r for r in schema.get("required", []) if isinstance(r, str)]
    out: dict[str, Any] = {}
    for key, sub in props.items():
        sub = sub if isinstance(sub, dict) else {}
        stated = explicit(source.text, key) is not None or _enum_mentioned(sub, source, defs)
        if key in required or fill or stated:
            out[key] = _value(sub, key, source, defs, fill, depth + 1)
    for key in required:
        out.setdefault(key, "")
    return out


def _enum_mentioned(schema: Mapping[str, Any], source: Source, defs: Mapping[str, Any]) -> bool:
    options = _resolve(schema, defs).get("enum")
    if not isinstance(options, list):
        return False
    lowered = source.text.lower()
    return any(isinstance(o, str) and re.search(rf"\b{re.escape(o.lower())}\b", lowered) for o in options)


def _enum(options: list[Any], source: Source) -> Any:
    lowered = source.text.lower()
    for option in options:
        if isinstance(option, str) and re.search(rf"\b{re.escape(option.lower())}\b", lowered):
            return option
    return options[0]


def _number(schema: Mapping[str, Any], name: str, source: Source, *, integer: bool) -> int | float:
    found = explicit(source.text, name)
    candidates = [found] if found is not None and _NUMBER.fullmatch(found) else []
    candidates += _NUMBER.findall(source.text)
    raw = source.take(candidates)
    if raw is not None:
        value: float = float(raw)
    elif isinstance(schema.get("default"), (int, float)):
        value = float(schema["default"])
    else:
        value = 1.0
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    step = 1 if integer else 0.5
    if isinstance(low, (int, float)) and value < low + (step if "exclusiveMinimum" in schema else 0):
        value = low + (step if "exclusiveMinimum" in schema else 0)
    if isinstance(high, (int, float)) and value > high - (step if "exclusiveMaximum" in schema else 0):
        value = high - (step if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else value


def _string(schema: Mapping[str, Any], name: str, source: Source) -> str:
    value = _string_candidate(schema, name, source)
    min_len, max_len = schema.get("minLength"), schema.get("maxLength")
    if isinstance(min_len, int) and len(value) < min_len:
        value = value + "x" * (min_len - len(value))
    if isinstance(max_len, int) and len(value) > max_len:
        value = value[:max_len]
    return value


def _string_candidate(schema: Mapping[str, Any], name: str, source: Source) -> str:
    text, key = source.text, name.lower()
    fmt = schema.get("format")
    found = explicit(text, name)
    if found is not None:
        return found
    if fmt == "date-time":
        dates = _DATE.findall(text)
        return (dates[0] if dates else "2026-01-01") + "T00:00:00Z"
    shaped = [
        ("email", _EMAIL, "user@example.com"),
        ("url", _URL, "https://example.com"),
        ("uri", _URL, "https://example.com"),
        ("link", _URL, "https://example.com"),
        ("date", _DATE, "2026-01-01"),
        ("path", _PATH, "/tmp/file.txt"),
        ("file", _PATH, "file.txt"),
    ]
    for hint, pattern, default in shaped:
        if hint in key or fmt == hint:
            return source.take(pattern.findall(text)) or default
    if key in _DIRECTIONS:
        hit = re.search(rf"\b{_DIRECTIONS[key]}\s+([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)", text)
        if hit:
            return hit.group(1)
    quoted = [next(g for g in m if g) for m in _QUOTED.findall(text)]
    if any(hint == key or key.endswith("_" + hint) for hint in _FREE_TEXT):
        return source.take(quoted) or source.text.strip() or "query"
    if quoted:
        taken = source.take(quoted)
        if taken:
            return taken
    nouns = [p for p in _PROPER.findall(text) if p.lower() not in STOPWORDS and not _starts_sentence(text, p)]
    if nouns:
        return source.take(nouns) or nouns[0]
    if isinstance(schema.get("default"), str):
        return str(schema["default"])
    return source.fallback_text or key or "value"


def _starts_sentence(text: str, phrase: str) -> bool:
    index = text.find(phrase)
    return index == 0 or bool(re.search(r"[.!?\n]\s*$", text[:index]))


def explicit(text: str, name: str) -> str | None:
    """A value the prompt states outright for ``name``: ``name: v``, ``name is v``, ``3 name``..."""
    if not name:
        return None
    label = r"[\s_-]?".join(re.escape(part) for part in re.split(r"[\s_-]+", name) if part)
    pattern = rf"\b{label}\b\s*(?::|=|\bis\b|\bof\b)\s*(?:\"([^\"]*)\"|'([^']*)'|`([^`]*)`|([^\s,;!?]+))"
    hit = re.search(pattern, text, re.IGNORECASE)
    if not hit:
        before = re.search(rf"(?<![\w.])(-?\d+(?:\.\d+)?)\s+{label}", text, re.IGNORECASE)  # "3 days"
        return before.group(1) if before else None
    value = next(g for g in hit.groups() if g is not None)
    return value.rstrip(".") if hit.group(4) is not None else value
