"""Request parameters: bracket-notation decoding and Stripe's validation rules.

Values arrive as strings from form bodies and query strings, or as Python values from the
in-process API; every parser accepts both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import invalid, unknown_parameter

Parser = Callable[[Any, str], Any]
Spec = Mapping[str, Parser]

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn `a[b][]=1` style pairs into nested dicts and lists, as Stripe reads them."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        path = [head] + (_KEY_PART.findall("[" + rest) if rest else [])
        node: Any = root
        for position, part in enumerate(path):
            last = position == len(path) - 1
            if part == "":  # `x[]` appends to a list
                if last:
                    node.append(value)
                else:
                    node.append({})
                    node = node[-1]
                continue
            next_is_append = not last and path[position + 1] == ""
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if next_is_append else {})
    decoded: dict[str, Any] = _lists_from_indexed_dicts(root)
    return decoded


def _lists_from_indexed_dicts(node: Any) -> Any:
    """`{"0": a, "1": b}` (from `x[0]=a&x[1]=b`) becomes `[a, b]`."""
    if isinstance(node, dict):
        converted = {key: _lists_from_indexed_dicts(value) for key, value in node.items()}
        if converted and all(key.isdigit() for key in converted):
            return [converted[key] for key in sorted(converted, key=int)]
        return converted
    if isinstance(node, list):
        return [_lists_from_indexed_dicts(item) for item in node]
    return node


def parse(params: Mapping[str, Any], spec: Spec, prefix: str = "") -> dict[str, Any]:
    """Validate `params` against `spec`; unknown names are rejected as Stripe does."""
    parsed: dict[str, Any] = {}
    for name, value in params.items():
        path = f"{prefix}[{name}]" if prefix else name
        parser = spec.get(name)
        if parser is None:
            raise unknown_parameter(path)
        parsed[name] = parser(value, path)
    return parsed


def require(params: Mapping[str, Any], *names: str) -> None:
    """Stripe's 400 for a missing required parameter."""
    for name in names:
        if params.get(name) in (None, ""):
            raise invalid(f"Missing required param: {name}.", name, "parameter_missing")


def text(max_length: int = 5000, nullable: bool = True) -> Parser:
    """A string; an empty string unsets a nullable field."""

    def parse_text(value: Any, path: str) -> str | None:
        if value is None or value == "":
            if nullable:
                return None
            raise invalid(f"You passed an empty string for '{path}'.", path)
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {value!r}", path)
        if len(value) > max_length:
            raise invalid(f"Invalid {path}: must be at most {max_length} characters", path)
        return value

    return parse_text


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """An integer within bounds; `""` unsets."""

    def parse_integer(value: Any, path: str) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise invalid(f"Invalid integer: {value}", path)
        try:
            number = int(value) if isinstance(value, int) else int(str(value), 10)
        except ValueError:
            raise invalid(f"Invalid integer: {value}", path) from None
        if minimum is not None and number < minimum:
            raise invalid(f"Invalid {path}: must be greater than or equal to {minimum}", path)
        if maximum is not None and number > maximum:
            raise invalid(f"Invalid {path}: must be less than or equal to {maximum}", path)
        return number

    return parse_integer


def number(minimum: float, maximum: float) -> Parser:
    """A decimal such as `percent_off`, strictly above `minimum`, at most `maximum`."""

    def parse_number(value: Any, path: str) -> float | None:
        if value is None or value == "":
            return None
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid decimal: {value}", path) from None
        if not minimum < parsed <= maximum:
            raise invalid(
                f"Invalid {path}: must be greater than {minimum:g} and at most {maximum:g}", path
            )
        return parsed

    return parse_number


def boolean(value: Any, path: str) -> bool | None:
    """`true`/`false` as Stripe's form encoding sends them."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return bool(value)
    if value in ("true", "false"):
        return bool(value == "true")
    raise invalid(f"Invalid boolean: {value}", path)


def enum(*choices: str) -> Parser:
    """One of a fixed set of strings."""

    def parse_enum(value: Any, path: str) -> str | None:
        if value is None or value == "":
            return None
        if value not in choices:
            raise invalid(f"Invalid {path}: must be one of {', '.join(choices)}", path)
        return str(value)

    return parse_enum


def metadata(value: Any, path: str) -> dict[str, str] | None:
    """Stripe's metadata rules: up to 50 keys of 40 chars, values up to 500 chars.

    `None` (from `metadata=""`) means "clear all"; a value of `""` unsets that key.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, Mapping):
        raise invalid("Invalid metadata: must be a hash of string keys and values", path)
    if len(value) > 50:
        raise invalid("Invalid metadata: at most 50 keys are allowed", path)
    result: dict[str, str] = {}
    for key, item in value.items():
        if not key or len(key) > 40:
            raise invalid(f"Invalid metadata key {key!r}: 1 to 40 characters", f"{path}[{key}]")
        if isinstance(item, bool | int | float):
            item = str(item).lower() if isinstance(item, bool) else str(item)
        if not isinstance(item, str) or len(item) > 500:
            raise invalid(
                f"Invalid metadata value for {key!r}: a string of at most 500 characters",
                f"{path}[{key}]",
            )
        result[str(key)] = item
    return result


def string_list(max_items: int, item_max_length: int = 5000) -> Parser:
    """A list of strings such as `images` or `ids[]`; `""` means an empty list."""
    item_parser = text(item_max_length, nullable=False)

    def parse_list(value: Any, path: str) -> list[str]:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise invalid(f"Invalid array: {path}", path)
        if len(value) > max_items:
            raise invalid(f"Invalid {path}: at most {max_items} items", path)
        return [item_parser(item, f"{path}[{index}]") for index, item in enumerate(value)]

    return parse_list


def struct(spec: Spec) -> Parser:
    """A nested hash with its own known fields."""

    def parse_struct(value: Any, path: str) -> dict[str, Any] | None:
        if value is None or value == "":
            return None
        if not isinstance(value, Mapping):
            raise invalid(f"Invalid hash: {path}", path)
        return parse(value, spec, path)

    return parse_struct


def list_of(item: Parser, max_items: int) -> Parser:
    """A list of nested items, such as `marketing_features[0][name]`."""

    def parse_items(value: Any, path: str) -> list[Any]:
        if value is None or value == "":
            return []
        if not isinstance(value, list):
            raise invalid(f"Invalid array: {path}", path)
        if len(value) > max_items:
            raise invalid(f"Invalid {path}: at most {max_items} items", path)
        return [item(entry, f"{path}[{index}]") for index, entry in enumerate(value)]

    return parse_items


def mapping(value_parser: Parser, key_pattern: str = r"^[a-z]{3}$") -> Parser:
    """A hash keyed by e.g. currency codes: `currency_options[eur][amount_off]=...`."""
    key_re = re.compile(key_pattern)

    def parse_mapping(value: Any, path: str) -> dict[str, Any] | None:
        if value is None or value == "":
            return None
        if not isinstance(value, Mapping):
            raise invalid(f"Invalid hash: {path}", path)
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not key_re.match(str(key)):
                raise invalid(f"Invalid key {key!r} in {path}", f"{path}[{key}]")
            result[str(key)] = value_parser(item, f"{path}[{key}]")
        return result

    return parse_mapping


def currency(value: Any, path: str) -> str | None:
    """A three-letter ISO currency code, lower-cased as Stripe returns it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value):
        raise invalid(f"Invalid currency: {value}", path)
    return value.lower()


def range_filter(value: Any, path: str) -> dict[str, int]:
    """`created=N` or `created[gt|gte|lt|lte]=N`, normalised to a dict of bounds."""
    if isinstance(value, Mapping):
        bounds = parse(value, {op: integer() for op in ("gt", "gte", "lt", "lte")}, path)
        return {op: bound for op, bound in bounds.items() if bound is not None}
    exact = integer()(value, path)
    return {} if exact is None else {"gte": exact, "lte": exact}


def expand_list(value: Any, path: str) -> list[str]:
    """`expand[]=a&expand[]=b`."""
    return list(string_list(100)(value, path))


LIST_SPEC: dict[str, Parser] = {
    "limit": integer(),
    "starting_after": text(),
    "ending_before": text(),
    "created": range_filter,
    "expand": expand_list,
}
