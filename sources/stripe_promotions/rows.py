"""One canonical row shape per object type, whatever API version rendered the object.

Rows carry when and how they were observed (`_observed_*`); pages become Arrow tables with
declared column types, so a first `25` never makes `percent_off` an integer column.
Free-form maps and lists stay JSON text; fields Stripe adds later become new columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
import pyarrow as pa
from dlt.common.data_types.typing import TDataType
from dlt.common.schema.typing import TColumnSchema

TEXT, BIGINT, DOUBLE, BOOL, JSON = "text", "bigint", "double", "bool", "json"
ARROW_TYPES: Final = {
    TEXT: pa.string(),
    BIGINT: pa.int64(),
    DOUBLE: pa.float64(),
    BOOL: pa.bool_(),
    JSON: pa.string(),
}

# How each row was observed; the transforms rank observations by (_observed_at, _observed_order).
OBSERVATION_COLUMNS: Final = {
    "_observed_at": BIGINT,  # Stripe's clock (Date header, or the event's `created`)
    "_observed_order": BIGINT,  # ties within a second: later events rank higher
    "_observed_via": TEXT,  # list | full_listing | retrieve | event | batch
    # Which observation slot the row fills: one per object for each way of reading the present
    # ("list", "full_listing", "retrieve"), and one per event or batch item. Each slot only
    # ever receives newer observations, so a merge on (id, slot) never loses the newest.
    "_observation_key": TEXT,
    "_api_version": TEXT,  # the version that rendered the object
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


@dataclass(frozen=True)
class Observation:
    """When and how a batch of objects was observed."""

    observed_at: int
    via: str
    key: str
    order: int = 0
    api_version: str | None = None


def json_text(value: Any) -> str | None:
    """JSON text for maps and lists, with sorted keys so equal values compare equal."""
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _as_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def canonical(object_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Stripe's object as a flat row: ids for expandable fields, JSON text for maps."""
    columns = OBJECT_COLUMNS[object_type]
    row: dict[str, Any] = {}
    for key, value in obj.items():
        if key in DROPPED:
            continue
        kind = columns.get(key)
        if kind == JSON or (kind is None and isinstance(value, Mapping | list)):
            row[key] = json_text(value)
        elif key in ID_FIELDS:
            row[key] = _as_id(value)
        else:
            row[key] = value
    if object_type == "promotion_code":
        promotion = obj.get("promotion") or {}
        # Before 2025-09-30 the coupon is embedded at the top; from it on, under `promotion`.
        coupon = obj.get("coupon") or promotion.get("coupon")
        row["coupon_id"] = _as_id(coupon)
        row["promotion_type"] = promotion.get("type") or ("coupon" if coupon else None)
        for key, value in (obj.get("restrictions") or {}).items():
            column = f"restrictions_{key}"
            row[column] = json_text(value) if isinstance(value, Mapping | list) else value
    return row


def to_table(
    object_type: str, rows: Sequence[Mapping[str, Any]], observations: Sequence[Observation]
) -> pa.Table:
    """Canonical rows plus their observation columns as one Arrow table."""
    declared = OBJECT_COLUMNS[object_type]
    names = list(declared) + sorted({k for row in rows for k in row} - set(declared))
    arrays: dict[str, pa.Array] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        kind = declared.get(name)
        arrays[name] = pa.array(values, type=ARROW_TYPES[kind]) if kind else _inferred(values)
    arrays.update(observation_arrays(observations))
    return pa.table(arrays)


def observation_arrays(observations: Sequence[Observation]) -> dict[str, pa.Array]:
    """The `_observed_*` columns for a table of rows."""
    return {
        "_observed_at": pa.array([o.observed_at for o in observations], pa.int64()),
        "_observed_order": pa.array([o.order for o in observations], pa.int64()),
        "_observed_via": pa.array([o.via for o in observations], pa.string()),
        "_observation_key": pa.array([o.key for o in observations], pa.string()),
        "_api_version": pa.array([o.api_version for o in observations], pa.string()),
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
    hints = column_hints({**OBJECT_COLUMNS[object_type], **OBSERVATION_COLUMNS})
    hints["_observed_at"]["dedup_sort"] = "desc"
    return hints


def rows_of(object_type: str, objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Canonical rows for many objects."""
    return [canonical(object_type, obj) for obj in objects]
