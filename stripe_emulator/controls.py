"""The emulator's own controls (`/_emulator/...`): one table that routes, documents and hints.

`CONTROLS` is the only list: the HTTP routes, `GET /_emulator`, the hints for a wrong path,
method or body, `python -m stripe_emulator --help` and the README table are all made from it.
Plain Python, no HTTP: `server.py` sends every `/_emulator` request to `find` and `run`.
"""

from __future__ import annotations

import difflib
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .account import Account
from .errors import StripeError

PREFIX = "/_emulator"
Handler = Callable[[Account, dict[str, Any], dict[str, str]], Any]
JSON_TYPES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
LISTING_NOTE = (
    "JSON in, JSON out; no API key needed and never rate-limited. A bad body is a 400 "
    '{"error": {"message": ...}} naming what is wrong.'
)


class ControlError(Exception):
    """A control refused: HTTP status and a message saying what to send instead."""

    def __init__(self, status: int, message: str, allow: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = tuple(allow)

    def body(self) -> dict[str, Any]:
        """The JSON body: `{"error": {"message": ...}}`, as every control error."""
        return {"error": {"message": self.message}}


@dataclass(frozen=True)
class Field:
    """One name a control's JSON body takes."""

    name: str
    type: str  # the JSON type(s), e.g. `number`, `number | null`
    shown: str  # how the short form shows its value, e.g. `seconds`, `true | false`
    meaning: str
    required: bool = False


@dataclass(frozen=True)
class Control:
    """One row of the table: method and path, what it does, its body and its answer."""

    method: str
    path: str
    handler: Handler
    does: str
    answers: str
    body: tuple[Field, ...] = ()
    example: Mapping[str, Any] | None = None

    @property
    def pattern(self) -> re.Pattern[str]:
        """The path as a regular expression (`{id}` is one path segment)."""
        parts = re.split(r"(\{\w+\})", self.path)
        return re.compile(
            "".join(
                f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
                for part in parts
            )
            + "$"
        )

    def shape(self, names: Iterable[str] | None = None) -> str:
        """The body in short, e.g. `{"advance": seconds, "freeze": true | false}` ("" if none)."""
        wanted = set(names) if names is not None else None
        fields = [f for f in self.body if wanted is None or f.name in wanted]
        if not fields:
            return ""
        return "{" + ", ".join(f'"{f.name}": {f.shown}' for f in fields) + "}"

    def signature(self, names: Iterable[str] | None = None) -> str:
        """`POST /_emulator/clock {"advance": seconds}`: how to call it, in one line."""
        return f"{self.method} {self.path} {self.shape(names)}".rstrip()

    def describe(self) -> dict[str, Any]:
        """This row for `GET /_emulator`."""
        return {
            "method": self.method,
            "path": self.path,
            "does": self.does,
            "body": {
                f.name: {"type": f.type, "required": f.required, "meaning": f.meaning}
                for f in self.body
            },
            "example": dict(self.example) if self.example is not None else None,
            "answers": self.answers,
        }

    def check_body(self, body: dict[str, Any]) -> None:
        """Unknown or missing names are a 400 naming the names it takes, never a silent no-op."""
        known = [f.name for f in self.body]
        for name in body:
            if name not in known:
                takes = ", ".join(known) if known else "no body"
                raise ControlError(
                    400,
                    f"{self.method} {self.path} takes {takes}; not {name!r}."
                    f"{did_you_mean(self.method, [name], within=self)}",
                )
        absent = [f.name for f in self.body if f.required and f.name not in body]
        if absent:
            raise ControlError(
                400,
                f"{self.method} {self.path} needs {', '.join(absent)}, "
                f"e.g. {json.dumps(self.example)}.",
            )


# -- the handlers -----------------------------------------------------------------------------


def _list(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    return listing()


def _reset(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    account.reset()
    return {"ok": True}


def _seed(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    return account.seed(**body)


def _now(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    return {"now": account.clock.now()}


def _clock(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    if "advance" in body:
        account.advance_clock(float(body["advance"]))
    if body.get("freeze"):
        account.clock.freeze()
    if body.get("freeze") is False:
        account.clock.unfreeze()
    return {"now": account.clock.now()}


def _api_version(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    account.set_api_version(body["api_version"])
    return {"api_version": account.api_version}


def _faults(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    if "event_delay" in body:
        account.set_event_delay(float(body.pop("event_delay")))
    account.faults.configure(**body)
    return {
        "event_delay": account.events.visibility_delay,
        **{k: v for k, v in vars(account.faults).items() if not k.startswith("_")},
        "injected": account.faults.injected(),
    }


def _rate_limits(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    account.rate_limits.configure(**body)
    return {**account.rate_limits.settings(), "rejected": account.rate_limits.rejected()}


def _keys(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    account.keys.set_access(body["key"], body["access"])
    return {"ok": True}


def _ordering(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    if "same_second_order" in body:
        account.set_same_second_order(body["same_second_order"])
    return {"same_second_order": account.same_second_order}


def _extra_fields(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    fields = body.get("fields") or {}
    if not isinstance(fields, dict):
        raise ValueError("fields must be a JSON object")
    account.set_extra_fields(body["kind"], fields)
    return {"extra_fields": account.extra_fields}


def _redeem(account: Account, body: dict[str, Any], match: dict[str, str]) -> Any:
    return account.redeem(match["id"])


def _requests(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    return {
        "total": sum(account.requests.values()),
        "by_endpoint": dict(account.requests),
        "by_account": dict(account.account_requests),
    }


def _clear_requests(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    account.requests.clear()
    account.account_requests.clear()
    return {"total": 0, "by_endpoint": {}, "by_account": {}}


def _state(account: Account, body: dict[str, Any], match: dict[str, str]) -> Any:
    return account.state(match["kind"])


SEED_NAMES = ("preset", "promotion_codes", "coupons", "products", "seed", "span_days")


def _connect_settings(account: Account) -> dict[str, Any]:
    return {**account.connect.settings(), "connect_budget": account.rate_limits.connect_budget}


def _connected_accounts(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    return {
        "connected_accounts": [a.describe() for a in account.connected_accounts()],
        "settings": _connect_settings(account),
    }


def _add_connected_account(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    seed = {name: body.pop(name) for name in SEED_NAMES if name in body}
    if "id" in body:
        body["account_id"] = body.pop("id")
    connected = account.add_connected_account(**body)
    if seed:
        connected.seed(**seed)
    return {
        **connected.describe(),
        "account": account.accounts.render(connected, account.api_version),
    }


def _disconnect(account: Account, body: dict[str, Any], match: dict[str, str]) -> Any:
    return account.disconnect_connected_account(match["id"]).describe()


def _delete_connected(account: Account, body: dict[str, Any], match: dict[str, str]) -> Any:
    return account.delete_connected_account(match["id"]).describe()


def _connected_state(account: Account, body: dict[str, Any], match: dict[str, str]) -> Any:
    return account.connected_account(match["id"]).state(match["kind"])


def _connect(account: Account, body: dict[str, Any], _: dict[str, str]) -> Any:
    if "connect_budget" in body:
        account.rate_limits.set_connect_budget(body.pop("connect_budget"))
    account.connect.configure(**body)
    return _connect_settings(account)


# -- the table --------------------------------------------------------------------------------

COUNT = "integer"
RATE = "number | null"
CONTROLS: tuple[Control, ...] = (
    Control("GET", PREFIX, _list, "this list of controls", '{"controls": [...], "note": ...}'),
    Control(
        "POST",
        f"{PREFIX}/reset",
        _reset,
        "forget every object, event, connected account, key rule, idempotency key, request "
        "count and clock offset; faults off, rate limits, ordering and Connect settings back "
        "to defaults",
        '{"ok": true}',
    ),
    Control(
        "POST",
        f"{PREFIX}/seed",
        _seed,
        "add a realistic, deterministic dataset (a preset, or counts); answers the counts after",
        '{"coupons": N, "products": N, "promotion_codes": N, "events": N}',
        (
            Field("preset", "string", '"demo"', "a named dataset (the one there is: demo)"),
            Field("promotion_codes", COUNT, "N", "promotion codes to add"),
            Field("coupons", COUNT, "N", "coupons to add (default promotion_codes/10)"),
            Field("products", COUNT, "N", "products to add (default promotion_codes/10)"),
            Field("seed", COUNT, "1", "random seed (default 1)"),
            Field("span_days", COUNT, "365", "days over which objects were created"),
        ),
        {"preset": "demo"},
    ),
    Control("GET", f"{PREFIX}/clock", _now, "the emulated time", '{"now": unix_seconds}'),
    Control(
        "POST",
        f"{PREFIX}/clock",
        _clock,
        "move emulated time forward (events age, coupons and codes expire), freeze or unfreeze it",
        '{"now": unix_seconds}',
        (
            Field("advance", "number", "seconds", "seconds to move forward (never back)"),
            Field("freeze", "boolean", "true | false", "stop the clock, or let it run again"),
        ),
        {"advance": 3600},
    ),
    Control(
        "POST",
        f"{PREFIX}/api_version",
        _api_version,
        "upgrade the account's default API version from now on",
        '{"api_version": ...}',
        (Field("api_version", "string", '"2024-06-20"', "a Stripe API version", required=True),),
        {"api_version": "2024-06-20"},
    ),
    Control(
        "POST",
        f"{PREFIX}/faults",
        _faults,
        "inject latency, 500s and dropped connections into API requests; delay events",
        'the settings plus "injected": {outcome: count}',
        (
            Field("latency_ms", "number", "MS", "latency added to every API answer"),
            Field("latency_max_ms", "number | null", "MS", "random latency up to this"),
            Field("error_rate", "number", "0..1", "share of requests answered 500 api_error"),
            Field("drop_rate", "number", "0..1", "share of connections dropped unanswered"),
            Field("seed", "integer", "N", "random seed of the faults"),
            Field("event_delay", "number", "seconds", "emulated seconds before a new event lists"),
        ),
        {"error_rate": 0.1},
    ),
    Control(
        "GET",
        f"{PREFIX}/rate_limits",
        _rate_limits,
        "the rate-limit settings and the 429s answered",
        'the settings plus "rejected": {operation: count}',
    ),
    Control(
        "POST",
        f"{PREFIX}/rate_limits",
        _rate_limits,
        "change rate limits (see Rate limits in stripe_emulator/README.md)",
        'the settings plus "rejected": {operation: count}',
        (
            Field("enabled", "boolean", "true | false", "false: never answer 429"),
            Field("live", RATE, "RPS", "account-wide requests per second with live keys"),
            Field("test", RATE, "RPS", "account-wide requests per second with test keys"),
            Field("operation", RATE, "RPS", "requests per second of each operation"),
            Field("operations", "object", "{operation: RPS}", "overrides by operation name"),
            Field("count_rejected", "boolean", "true | false", "whether a 429 counts"),
        ),
        {"operations": {"GET /v1/promotion_codes": 50}},
    ),
    Control(
        "POST",
        f"{PREFIX}/keys",
        _keys,
        "restrict (403) or revoke (401) an API key; every well-formed key has full access "
        "until then",
        '{"ok": true}',
        (
            Field("key", "string", '"rk_test_..."', "the API key", required=True),
            Field(
                "access",
                "string",
                '"full" | "read_only" | "none" | "revoked"',
                "what the key may do",
                required=True,
            ),
        ),
        {"key": "rk_test_restricted01", "access": "read_only"},
    ),
    Control(
        "GET",
        f"{PREFIX}/ordering",
        _ordering,
        "the order of objects created within one second",
        '{"same_second_order": ...}',
    ),
    Control(
        "POST",
        f"{PREFIX}/ordering",
        _ordering,
        "order objects created from now on within one second by insertion, or stably shuffled",
        '{"same_second_order": ...}',
        (
            Field(
                "same_second_order",
                "string",
                '"insertion" | "shuffled"',
                "newest inserted first, or a stable random order",
            ),
        ),
        {"same_second_order": "shuffled"},
    ),
    Control(
        "POST",
        f"{PREFIX}/extra_fields",
        _extra_fields,
        "schema drift: render every object of a kind with these extra or changed fields",
        '{"extra_fields": {kind: fields}}',
        (
            Field(
                "kind",
                "string",
                '"coupon" | "product" | "promotion_code"',
                "the object kind",
                required=True,
            ),
            Field("fields", "object", "{name: value}", "fields to add or override; {} stops"),
        ),
        {"kind": "coupon", "fields": {"new_field": 1}},
    ),
    Control(
        "POST",
        f"{PREFIX}/promotion_codes/{{id}}/redeem",
        _redeem,
        "a customer redeems the code: times_redeemed goes up on it and its coupon, with events",
        "the redeemed promotion code",
    ),
    Control(
        "GET",
        f"{PREFIX}/requests",
        _requests,
        "API requests so far, by operation, and those naming a connected account, by account",
        '{"total": N, "by_endpoint": {operation: count}, "by_account": {acct_id: count}}',
    ),
    Control(
        "DELETE",
        f"{PREFIX}/requests",
        _clear_requests,
        "forget the request counts",
        '{"total": 0, "by_endpoint": {}, "by_account": {}}',
    ),
    Control(
        "GET",
        f"{PREFIX}/state/{{kind}}",
        _state,
        "the truth, for assertions: every live object of a kind (coupon, product, "
        "promotion_code, event)",
        "{id: object}",
    ),
    Control(
        "GET",
        f"{PREFIX}/connected_accounts",
        _connected_accounts,
        "the platform's connected accounts, newest first, with their status (connected, "
        "disconnected, deleted) and object counts, and the Connect settings",
        '{"connected_accounts": [{"id", "status", "objects", ...}], "settings": {...}}',
    ),
    Control(
        "POST",
        f"{PREFIX}/connected_accounts",
        _add_connected_account,
        "connect a new account to the platform (an account of its own: its objects, events "
        "and ids; the one clock), optionally seeded; requests with Stripe-Account: its id "
        "then act on it",
        '{"id": "acct_...", "status": "connected", "objects": {...}, "account": {...}}',
        (
            Field("id", "string", '"acct_..."', "the account id (default: a random acct_ id)"),
            Field("type", "string", '"standard" | "express" | "custom"', "the account type"),
            Field("country", "string", '"US"', "two-letter country code"),
            Field("email", "string", '"shop@example.com"', "the account's email"),
            Field("default_currency", "string", '"usd"', "the account's default currency"),
            Field("metadata", "object", "{key: value}", "the account's metadata"),
            Field(
                "api_version", "string", '"2024-06-20"', "its API version (default: the platform's)"
            ),
            Field("preset", "string", '"demo"', "seed it with a named dataset"),
            Field("promotion_codes", COUNT, "N", "seed it with promotion codes"),
            Field("coupons", COUNT, "N", "seed coupons (default promotion_codes/10)"),
            Field("products", COUNT, "N", "seed products (default promotion_codes/10)"),
            Field("seed", COUNT, "1", "random seed of its dataset (default 1)"),
            Field("span_days", COUNT, "365", "days over which its objects were created"),
        ),
        {"email": "shop@example.com", "promotion_codes": 20},
    ),
    Control(
        "POST",
        f"{PREFIX}/connected_accounts/{{id}}/disconnect",
        _disconnect,
        "the account revokes the platform's access (OAuth deauthorization): it leaves "
        "GET /v1/accounts and requests for it get Stripe's 403 account_invalid",
        '{"id": ..., "status": "disconnected", ...}',
    ),
    Control(
        "DELETE",
        f"{PREFIX}/connected_accounts/{{id}}",
        _delete_connected,
        "delete a connected account: as disconnected, for good",
        '{"id": ..., "status": "deleted", ...}',
    ),
    Control(
        "GET",
        f"{PREFIX}/connected_accounts/{{id}}/state/{{kind}}",
        _connected_state,
        "the truth in one connected account: every live object of a kind (coupon, product, "
        "promotion_code, event)",
        "{id: object}",
    ),
    Control(
        "GET",
        f"{PREFIX}/connect",
        _connect,
        "the Connect settings (readings of what Stripe leaves silent)",
        '{"own_account_header": ..., "both_headers": ..., "connect_budget": ...}',
    ),
    Control(
        "POST",
        f"{PREFIX}/connect",
        _connect,
        "change the Connect settings (see Connect in stripe_emulator/README.md)",
        '{"own_account_header": ..., "both_headers": ..., "connect_budget": ...}',
        (
            Field(
                "own_account_header",
                "string",
                '"refuse" | "accept"',
                "the platform's own id in Stripe-Account: 403, or its own account",
            ),
            Field(
                "both_headers",
                "string",
                '"refuse" | "context"',
                "Stripe-Account and Stripe-Context together: 400, or Stripe-Context wins",
            ),
            Field(
                "connect_budget",
                "string",
                '"platform" | "per_account"',
                "whose rate limits a request for a connected account draws on",
            ),
        ),
        {"connect_budget": "per_account"},
    ),
)


# -- what the table says, in JSON, help text and Markdown ---------------------------------------


def listing() -> dict[str, Any]:
    """`GET /_emulator`: every control with its body and answer."""
    return {"controls": [control.describe() for control in CONTROLS], "note": LISTING_NOTE}


def help_text() -> str:
    """The controls for `--help`: one line to call each, one saying what it does."""
    lines = []
    for control in CONTROLS:
        lines += textwrap.wrap(
            control.signature(), 92, initial_indent="  ", subsequent_indent="    "
        )
        lines += textwrap.wrap(
            f"{control.does} -> {control.answers}",
            92,
            initial_indent=" " * 6,
            subsequent_indent=" " * 6,
        )
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's table of controls (a test holds the README to exactly this)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [
        "| method and path | body | answer | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for control in CONTROLS:
        if control.body:
            fields = "; ".join(
                f"`{f.name}` ({f.type}{', required' if f.required else ''}): {f.meaning}"
                for f in control.body
            )
            body = f"{fields}; e.g. `{json.dumps(control.example)}`"
        else:
            body = "none"
        answers = f"`{control.answers}`" if control.answers.startswith("{") else control.answers
        rows.append(
            f"| `{control.method} {control.path}` | {cell(body)} | {cell(answers)} "
            f"| {cell(control.does)} |"
        )
    return "\n".join(rows)


# -- finding a control, and hints when none fits ---------------------------------------------


def find(method: str, path: str) -> tuple[Control, dict[str, str]]:
    """The control for `method path` and its path parameters; else a 404 or 405 with a hint."""
    path = path.rstrip("/") or "/"
    methods = []
    for control in CONTROLS:
        match = control.pattern.match(path)
        if match:
            if control.method == method:
                return control, match.groupdict()
            methods.append(control)
    if methods:
        takes = " or ".join(f"{c.method} {c.shape()}".rstrip() for c in methods)
        raise ControlError(
            405,
            f"No emulator control {method} {path}: {path} takes {takes}. "
            f"GET {PREFIX} lists every control.",
            allow=[c.method for c in methods],
        )
    words = [w for w in re.split(r"[/_\-.]+", path.removeprefix(PREFIX)) if w]
    words += [w for w in path.removeprefix(PREFIX).split("/") if "_" in w]
    raise ControlError(
        404,
        f"No emulator control {method} {path}.{did_you_mean(method, words)} "
        f"GET {PREFIX} lists every control.",
    )


def did_you_mean(method: str, words: list[str], within: Control | None = None) -> str:
    """` Did you mean POST /_emulator/clock {"advance": seconds}?`, or "" with no close match."""
    best: tuple[float, Control, list[str]] | None = None
    for control in CONTROLS:
        fields = {f.name for f in control.body}
        segments = [s for s in control.path.removeprefix(PREFIX).split("/") if s]
        names = {s for s in segments if not s.startswith("{")}
        keywords = names | {w for s in names for w in s.split("_")} | fields
        if within is not None:  # a misspelt body name: `within`'s fields, else another path
            keywords = fields if control is within else names
        score, named = 0.0, []
        for word in words:
            close = difflib.get_close_matches(word.lower(), keywords, n=1, cutoff=0.8)
            if close:
                score += difflib.SequenceMatcher(None, word.lower(), close[0]).ratio()
                if close[0] in fields and close[0] not in names:
                    named.append(close[0])
        if score and control.method == method:
            score += 0.5
        if score and (best is None or score > best[0]):
            best = (score, control, named)
    if best is None:
        return ""
    _, control, named = best
    if control is within:
        return f" Did you mean {named[0]!r}?" if named else ""
    return f" Did you mean {control.signature(named or None)}?"


def parse_body(text: str, content_type: str, control: Control, base: str) -> dict[str, Any]:
    """The JSON object in a control's body (empty: `{}`); anything else is a 400 saying why."""
    if not text.strip():
        return {}
    problem: ValueError | None = None
    try:
        body = json.loads(text)
    except ValueError as error:
        body, problem = None, error
    if isinstance(body, dict):
        return body
    if problem is None:
        got = f"a JSON {JSON_TYPES.get(type(body), 'value')}"
    elif content_type == "application/x-www-form-urlencoded":
        got = f"a form/urlencoded body (Content-Type: {content_type})"
    elif content_type == "application/json":
        got = f"invalid JSON ({problem})"
    else:
        got = f"a body that is not JSON (Content-Type: {content_type or 'none'})"
    if not control.body:
        raise ControlError(400, f"{control.method} {control.path} takes no body; got {got}.")
    example = json.dumps(control.example)
    raise ControlError(
        400,
        f"The body must be a JSON object, e.g. {example}; got {got}. Send JSON, e.g. "
        f"curl --json '{example}' {base}{control.path}",
    )


def run(
    account: Account, control: Control, body: dict[str, Any], match: dict[str, str]
) -> tuple[int, Any]:
    """Check the body against the table, call the control; errors as status and JSON body."""
    try:
        control.check_body(body)
        return 200, control.handler(account, body, match)
    except ControlError as error:
        return error.status, error.body()
    except StripeError as error:
        return error.status, error.body()
    except (KeyError, TypeError, ValueError) as error:
        return 400, {"error": {"message": str(error)}}
