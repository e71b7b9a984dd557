"""One canonical row shape per object type, whatever API version rendered the object.

Rows carry when and how they were observed (`_observed_*`); pages become Arrow tables with
declared column types, so a first `25` never makes `percent_off` an integer column.
Free-form maps and lists stay JSON text; fields Stripe adds later become new columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import orjson
import pyarrow as pa
from dlt.common.data_types.typing import TDataType
from dlt.common.schema.typing import TColumnSchema

from .observation import Observation

TEXT, BIGINT, DOUBLE, BOOL, JSON = "text", "bigint", "double", "bool", "json"
ARROW_TYPES: Final = {
    TEXT: pa.string(),
    BIGINT: pa.int64(),
    DOUBLE: pa.float64(),
    BOOL: pa.bool_(),
    JSON: pa.string(),
}

# How each row was observed (the ordering policy is in observation.py): the transforms rank
# an object's rows by (_observed_at, _observed_rank, _observed_sequence), newest first.
OBSERVATION_COLUMNS: Final = {
    "_observed_at": BIGINT,  # Stripe's clock, in seconds
    "_observed_rank": BIGINT,  # within a second: 1 read, 2 event, 3 deletion (observation.Rank)
    "_observed_sequence": BIGINT,  # within a rank: the local clock in ns, or Stripe's event order
    "_observed_via": TEXT,  # list | full_listing | retrieve | event | batch | not_found | manual
    # The slot the row fills (observation.Observation.key): a read's is `<via>:<digest>`.
    "_observation_key": TEXT,
    "_api_version": TEXT,  # the version that rendered the object
    # A partial observation's fields as a JSON array (a batch patch; [] for a tombstone);
    # NULL for a complete object. The transforms take each field from its newest carrier.
    "_patched_fields": TEXT,
    # Whether this observation says the object is gone, since when, how we know, and why.
    "_deleted": BOOL,
    "_deleted_at": BIGINT,
    "_deletion_source": TEXT,  # event | not_found | batch | manual
    "_deletion_reason": TEXT,
}

OBJECT_COLUMNS: Final[dict[str, dict[str, str]]] = {
    "coupon": {
        "id": TEXT,
        "amount_off": BIGINT,
        "applies_to": JSON,
        "created": BIGINT,
        "currency": TEXT,
        "currency_options": JSON,
        "duration": TEXT,
        "duration_in_months": BIGINT,
        "livemode": BOOL,
        "max_redemptions": BIGINT,
        "metadata": JSON,
        "name": TEXT,
        "percent_off": DOUBLE,
        "redeem_by": BIGINT,
        "times_redeemed": BIGINT,
        "valid": BOOL,
    },
    "product": {
        "id": TEXT,
        "active": BOOL,
        "created": BIGINT,
        "default_price": TEXT,
        "description": TEXT,
        "images": JSON,
        "livemode": BOOL,
        "marketing_features": JSON,
        "metadata": JSON,
        "name": TEXT,
        "package_dimensions": JSON,
        "shippable": BOOL,
        "statement_descriptor": TEXT,
        "tax_code": TEXT,
        "type": TEXT,
        "unit_label": TEXT,
        "updated": BIGINT,
        "url": TEXT,
    },
    "promotion_code": {
        "id": TEXT,
        "active": BOOL,
        "code": TEXT,
        "coupon_id": TEXT,
        "created": BIGINT,
        "customer": TEXT,
        "customer_account": TEXT,
        "expires_at": BIGINT,
        "livemode": BOOL,
        "max_redemptions": BIGINT,
        "metadata": JSON,
        "promotion_type": TEXT,
        "restrictions_currency_options": JSON,
        "restrictions_first_time_transaction": BOOL,
        "restrictions_minimum_amount": BIGINT,
        "restrictions_minimum_amount_currency": TEXT,
        "times_redeemed": BIGINT,
    },
}
# Fields whose value may come expanded (an object) but is stored as the id.
ID_FIELDS: Final = {"default_price", "tax_code", "customer", "coupon_id"}
# Fields that are not columns: the object's type, and shapes the canonical row replaces.
DROPPED: Final = {"object", "coupon", "promotion", "restrictions"}


def json_text(value: Any) -> str | None:
    """JSON text for maps and lists, with sorted keys so equal values compare equal."""
    if value is None:
        return None
    if not value and type(value) is dict:  # the usual empty `metadata`, without orjson
        return "{}"
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _as_id(value: Any) -> Any:
    if value is None or type(value) is str:  # the usual case, without the ABC check
        return value
    return value.get("id") if isinstance(value, Mapping) else value


def observation_values(observation: Observation) -> dict[str, Any]:
    """The bookkeeping columns' values (OBSERVATION_COLUMNS) of every row of one observation."""
    deletion, patched = observation.deletion, observation.patched_fields
    return {
        "_observed_at": observation.observed_at,
        "_observed_rank": int(observation.rank),
        "_observed_sequence": observation.sequence,
        "_observed_via": observation.via,
        "_observation_key": observation.key,
        "_api_version": observation.api_version,
        "_patched_fields": None if patched is None else json_text(list(patched)),
        "_deleted": deletion is not None,
        "_deleted_at": deletion and deletion.at,
        "_deletion_source": deletion and deletion.source,
        "_deletion_reason": deletion and deletion.reason,
    }


def content_keys(prefix: str, objects: Sequence[Any]) -> list[str]:
    """Each object's read slot, `<prefix>:<digest>`: 16 hex digits of a hash of the object as
    received (keys sorted), so equal content gets the same slot (about 0.7 µs an object)."""
    head, dumps, sort, blake2b = prefix + ":", orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.blake2b
    return [head + blake2b(dumps(obj, option=sort), digest_size=8).hexdigest() for obj in objects]


def observation_arrays(
    chunks: Sequence[tuple[Observation, int]], keys: pa.Array | None = None
) -> dict[str, pa.Array]:
    """The bookkeeping columns for chunks of rows that share an observation (a page is one
    chunk): each a run of one value, made by Arrow rather than row by row; `keys`, when
    given, is the per-row `_observation_key` (reads' content slots) instead of runs."""
    parts: dict[str, list[pa.Array]] = {name: [] for name in OBSERVATION_COLUMNS}
    for observation, rows in chunks:
        for name, value in observation_values(observation).items():
            if keys is not None and name == "_observation_key":
                continue
            kind = ARROW_TYPES[OBSERVATION_COLUMNS[name]]
            parts[name].append(pa.repeat(pa.scalar(value, kind), rows))
    if keys is not None:
        parts["_observation_key"] = [keys]
    return {
        name: arrays[0]
        if len(arrays) == 1
        else pa.concat_arrays(arrays)
        if arrays
        else pa.array([], ARROW_TYPES[OBSERVATION_COLUMNS[name]])
        for name, arrays in parts.items()
    }


def _inferred(values: list[Any]) -> pa.Array:
    """A field Stripe added after this code was written: text (strings as they are, anything
    else as JSON), so a later change of the field's type can never fail a load."""
    return pa.array(
        [None if v is None else v if isinstance(v, str) else json_text(v) for v in values],
        pa.string(),
    )


def column_hints(columns: Mapping[str, str]) -> dict[str, TColumnSchema]:
    """dlt column hints declaring each column's type (never guessed from the first row)."""
    return {
        name: {"data_type": cast(TDataType, kind), "nullable": name != "id"}
        for name, kind in columns.items()
    }


def object_table_hints(object_type: str) -> dict[str, TColumnSchema]:
    """Column hints for an object table: the object's fields and the observation columns."""
    hints = column_hints({"account_id": TEXT, **OBJECT_COLUMNS[object_type], **OBSERVATION_COLUMNS})
    hints["_observed_at"]["dedup_sort"] = "desc"
    return hints


def objects_table(object_type: str, pages: Sequence[tuple[Observation, Sequence[Any]]]) -> pa.Table:
    """Stripe objects, in chunks that share an observation, as one Arrow table of flat rows.

    Ids for expandable fields, JSON text for maps, a promotion code's coupon as `coupon_id`
    whichever API version rendered it, its restrictions as `restrictions_*` columns, and
    fields this code does not know as text. Built column by column: about twice as fast as
    row by row (benchmarks/RESULTS.md), which matters for listings of millions of objects.
    """
    objects = [obj for _, page in pages for obj in page]
    declared = OBJECT_COLUMNS[object_type]
    keys: set[str] = set()
    for obj in objects:
        keys.update(obj)
    derived: set[str] = set()
    restrictions: list[Mapping[str, Any]] = []
    code = object_type == "promotion_code"
    if code:
        restrictions = [obj.get("restrictions") or {} for obj in objects]
        inner: set[str] = set()
        for found in restrictions:
            inner.update(found)
        derived = {"coupon_id", "promotion_type", *(f"restrictions_{k}" for k in inner)}
    extra = sorted((keys - DROPPED | derived) - declared.keys())
    promotion = _promotion_columns(objects) if code else {}
    arrays: dict[str, pa.Array] = {}
    for name in [*declared, *extra]:
        kind = declared.get(name)
        if name in promotion:
            values = promotion[name]
        else:
            values = _top_level(objects, name, kind)
            if code and name.startswith("restrictions_") and name in derived:
                key = name[len("restrictions_") :]
                values = [
                    _flat(found[key]) if key in found else value
                    for found, value in zip(restrictions, values, strict=True)
                ]
        arrays[name] = pa.array(values, type=ARROW_TYPES[kind]) if kind else _inferred(values)
    slot_keys = None
    if any(seen.by_content for seen, _ in pages):  # reads: a slot per object and content
        slots: list[str] = []
        for seen, page in pages:
            slots += content_keys(seen.key, page) if seen.by_content else [seen.key] * len(page)
        slot_keys = pa.array(slots, pa.string())
    arrays.update(observation_arrays([(seen, len(page)) for seen, page in pages], slot_keys))
    return pa.table(arrays)


def carried_fields(object_type: str, obj: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The columns of an object's row that the object gives a value, even null, as (the field
    as the object names it, its column, its value): a promotion code's `coupon` or `promotion`
    gives `coupon_id` and `promotion_type`, its `restrictions.*` the `restrictions_*` columns.
    (`objects_table` fills the other columns with null only because the object lacks them.)"""
    code = object_type == "promotion_code"
    derived = {"coupon_id", "promotion_type"} if code else set()
    fields = [(n, n, v) for n, v in obj.items() if n not in DROPPED and n not in derived]
    if code:
        promotion, restrictions = obj.get("promotion"), obj.get("restrictions")
        inner = promotion if isinstance(promotion, Mapping) else {}
        if "coupon" in obj:
            fields.append(("coupon", "coupon_id", obj["coupon"]))
        if "promotion" in obj:
            fields.append(("promotion.coupon", "coupon_id", inner.get("coupon")))
        if "coupon" in obj or "promotion" in obj:
            fields.append(("promotion.type", "promotion_type", inner.get("type")))
        if isinstance(restrictions, Mapping):
            fields += [
                (f"restrictions.{k}", f"restrictions_{k}", v) for k, v in restrictions.items()
            ]
    return fields


def patched_fields(object_type: str, obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The fields an object carries if it lacks any declared one (a patch); None if complete."""
    carried = {column for _, column, _ in carried_fields(object_type, obj)}
    if OBJECT_COLUMNS[object_type].keys() <= carried:
        return None
    return tuple(sorted(carried - {"id"}))


def _top_level(objects: Sequence[Mapping[str, Any]], name: str, kind: str | None) -> list[Any]:
    """A top-level field's values for its column (undeclared ones become text in `_inferred`)."""
    if kind == JSON:
        return [json_text(obj.get(name)) for obj in objects]
    if name in ID_FIELDS:
        return [_as_id(obj.get(name)) for obj in objects]
    return [obj.get(name) for obj in objects]


def _promotion_columns(objects: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """`coupon_id` and `promotion_type` of promotion codes, whichever API version rendered them."""
    coupons, types = [], []
    for obj in objects:
        promotion = obj.get("promotion") or {}
        coupon = obj.get("coupon") or promotion.get("coupon")
        coupons.append(_as_id(coupon))
        types.append(promotion.get("type") or ("coupon" if coupon else None))
    return {"coupon_id": coupons, "promotion_type": types}


def _flat(value: Any) -> Any:
    """A value of a field without a declared type: maps and lists as JSON text."""
    if value is None or type(value) in _SCALARS:  # the usual case, without the ABC check
        return value
    return json_text(value) if isinstance(value, Mapping | list) else value


_SCALARS: Final = frozenset({str, int, float, bool})
