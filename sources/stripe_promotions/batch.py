"""Batches for `sync_batch`: objects or saved webhook events, checked before anything loads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import StripeSourceError
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
    if item.get("object") == "event":
        event_type = item.get("type")
        obj = (
            (item.get("data") or {}).get("object")
            if isinstance(item.get("data"), Mapping)
            else None
        )
        problems = []
        if not isinstance(item.get("id"), str) or not item.get("id"):
            problems.append("event has no string `id`")
        if not isinstance(item.get("created"), int) or isinstance(item.get("created"), bool):
            problems.append("event has no integer `created`")
        if not isinstance(event_type, str) or not event_type.startswith(f"{object_type}."):
            problems.append(f"event type {event_type!r} is not about a {object_type}")
        if not isinstance(obj, Mapping):
            problems.append("event has no `data.object`")
        else:
            problems += [f"data.object {p}" for p in _problems(object_type, obj)]
        return problems
    problems = []
    if item.get("object") != object_type:
        problems.append(f"`object` is {item.get('object')!r}, expected {object_type!r}")
    if not isinstance(item.get("id"), str) or not item.get("id"):
        problems.append("has no string `id`")
    if item.get("deleted") is True:
        return problems
    created = item.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        problems.append(f"`created` is {created!r}, expected an integer unix time")
    return problems


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


def batch_types(items: Sequence[Mapping[str, Any]]) -> set[str]:
    """Object types present in a batch (for messages)."""
    return {str(i.get("object")) for i in items}
