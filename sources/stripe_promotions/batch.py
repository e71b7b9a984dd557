"""Batches for `sync_batch`: objects or saved webhook events, checked before anything loads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from .errors import StripeSourceError
from .rows import BIGINT, BOOL, DOUBLE, ID_FIELDS, OBJECT_COLUMNS, TEXT, carried_fields
from .settings import OBJECT_TYPES


class BatchError(StripeSourceError):
    """A batch that cannot be loaded; the message names every bad item."""


def read_batch_file(path: str | Path) -> list[Any]:
    """Items from a JSON file (an array, or a Stripe list `{"data": [...]}`) or a JSONL file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise BatchError(f"Cannot read batch file {file}: {error.strerror}.") from None
    stripped = text.lstrip()
    if not stripped:
        raise BatchError(f"Batch file {file} is empty.")
    if stripped[0] in "[{":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            if stripped[0] == "{" and "\n" in text.strip():
                return _read_jsonl(file, text)
            raise BatchError(
                f"Batch file {file} is not valid JSON (line {error.lineno}, column "
                f"{error.colno}: {error.msg}); expected a JSON array of objects or JSON lines."
            ) from None
        if isinstance(document, list):
            return document
        if isinstance(document, Mapping) and isinstance(document.get("data"), list):
            return list(document["data"])
        return [document]
    raise BatchError(
        f"Batch file {file} is not JSON: expected a JSON array of objects or JSON lines."
    )


def _read_jsonl(file: Path, text: str) -> list[Any]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise BatchError(
                f"Batch file {file}, line {number}: not valid JSON ({error.msg})."
            ) from None
    return items


def _problems(object_type: str, item: Any) -> list[str]:
    """What is wrong with one item (an object of `object_type`, or an event about one)."""
    if not isinstance(item, Mapping):
        return [f"is a {type(item).__name__}, not a JSON object"]
    if item.get("object") != "event":
        return _object_problems(object_type, item, whole=False)
    event_type = item.get("type")
    obj = (item.get("data") or {}).get("object") if isinstance(item.get("data"), Mapping) else None
    problems = []
    if not isinstance(item.get("id"), str) or not item.get("id"):
        problems.append("event has no string `id`")
    if not _is_int(item.get("created")):
        problems.append("event has no integer `created`")
    if not isinstance(event_type, str) or not event_type.startswith(f"{object_type}."):
        problems.append(f"event type {event_type!r} is not about a {object_type}")
    if not isinstance(obj, Mapping):
        problems.append("event has no `data.object`")
    else:
        # An event carries the whole object: its snapshot replaces every stored field.
        problems += [f"data.object {p}" for p in _object_problems(object_type, obj, whole=True)]
    return problems


# What a field's value must be, by its column's type (a JSON column takes any value).
_EXPECTED: Final = {
    TEXT: "a string",
    BIGINT: "an integer",
    DOUBLE: "a number",
    BOOL: "true or false",
}


def _object_problems(object_type: str, obj: Mapping[str, Any], *, whole: bool) -> list[str]:
    """What is wrong with an object: it needs an `id`; `object` and `created` only if `whole`
    (a batch item may be a patch), and every field it has must fit its column."""
    problems = []
    if "id" not in obj:
        problems.append("`id` is missing")
    elif not isinstance(obj["id"], str) or not obj["id"]:
        problems.append(f"`id` is {obj['id']!r}, expected a non-empty string")
    if "object" not in obj and whole:
        problems.append(f"`object` is missing, expected {object_type!r}")
    elif "object" in obj and obj["object"] != object_type:
        problems.append(f"`object` is {obj['object']!r}, expected {object_type!r}")
    if obj.get("deleted") is True:
        return problems
    if "created" not in obj and whole:
        problems.append("`created` is missing, expected an integer unix time")
    elif "created" in obj and not _is_int(obj["created"]):
        problems.append(f"`created` is {obj['created']!r}, expected an integer unix time")
    columns = OBJECT_COLUMNS[object_type]
    if object_type == "promotion_code":
        for name in ("promotion", "restrictions"):
            if obj.get(name) is not None and not isinstance(obj[name], Mapping):
                problems.append(f"`{name}` is {obj[name]!r}, expected an object")
    for shown, column, value in carried_fields(object_type, obj):
        if column in ("id", "created") or column not in columns:
            continue  # checked above, or a field Stripe added (kept as it comes)
        if value is not None and not _fits(columns[column], column, value):
            expected = "an id" if column in ID_FIELDS else _EXPECTED[columns[column]]
            problems.append(f"`{shown}` is {value!r}, expected {expected} or null")
    return problems


def _fits(kind: str, name: str, value: Any) -> bool:
    """Whether a field's (non-null) value fits its column."""
    if name in ID_FIELDS:  # an id, or the object it names when Stripe expanded it
        return isinstance(value, str) or (
            isinstance(value, Mapping) and isinstance(value.get("id"), str)
        )
    if kind == TEXT:
        return isinstance(value, str)
    if kind == BIGINT:
        return _is_int(value)
    if kind == DOUBLE:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == BOOL:
        return isinstance(value, bool)
    return True


def _is_int(value: Any) -> bool:
    """An integer that is not a boolean (JSON's true is Python's 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _identity(item: Mapping[str, Any]) -> tuple[str, Any]:
    if item.get("object") == "event":
        return ("event", item.get("id"))
    return ("object", item.get("id"))


def validate_batch(object_type: str, items: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The items if every one is good; else one error naming every bad item."""
    if object_type not in OBJECT_TYPES:
        raise BatchError(
            f"Unknown object type {object_type!r}: use one of {', '.join(OBJECT_TYPES)}."
        )
    checked: list[Mapping[str, Any]] = []
    errors: list[str] = []
    seen: dict[tuple[str, Any], Mapping[str, Any]] = {}
    for index, item in enumerate(items):
        label = f"item {index}" + (
            f" ({item.get('id')})" if isinstance(item, Mapping) and item.get("id") else ""
        )
        problems = _problems(object_type, item)
        if not problems:
            identity = _identity(item)
            earlier = seen.get(identity)
            if earlier is not None and earlier != item:
                problems.append(f"conflicts with an earlier item with the same {identity[0]} id")
            seen[identity] = item
        if problems:
            errors.append(f"  {label}: " + "; ".join(problems))
        else:
            checked.append(item)
    if not checked and not errors:
        raise BatchError("The batch is empty: nothing to load.")
    if errors:
        raise BatchError(
            f"Rejected the whole batch ({len(errors)} bad item(s) of "
            f"{len(errors) + len(checked)}); nothing was loaded:\n" + "\n".join(errors)
        )
    return checked
