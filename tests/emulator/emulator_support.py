"""Helpers shared by the emulator tests: SDK clients, raw HTTP, the command, Stripe's shapes.

Plain functions rather than fixtures (the fixtures `stripe_emulator` and `client` come from
tests/conftest.py), so test modules import what they use explicitly.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import requests
import stripe

from stripe_emulator.server import EmulatorServer

TEST_KEY = "sk_test_emulatorKey0123456789"
CURRENT_VERSION = "2026-10-28.endive"
OLD_VERSION = "2024-06-20"
# CI runs in a fresh clone with shared/ beside it: the repo root's parent holds shared/.
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "stripe"

FormValue = str | int | float | bool


ROOT = Path(__file__).resolve().parents[2]
# The base URL the command prints on its first line.
URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


def first_line(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """The process's first line of output, without hanging the suite if it never comes."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("the emulator printed nothing") from None


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[str, stripe.StripeClient]]:
    """`python -m stripe_emulator --port 0 ARGS` as users start it: its first line (which
    names its URL) and an SDK client for it; terminated after, and it must exit cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_emulator", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = first_line(process)
        match = URL.search(line)
        assert match, line
        yield line, stripe.StripeClient(TEST_KEY, base_addresses={"api": match.group(0)})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0


def sdk(
    server: EmulatorServer,
    *,
    version: str | None = None,
    key: str = TEST_KEY,
    retries: int = 0,
) -> stripe.StripeClient:
    """The official SDK pointed at the emulator, optionally pinned to an API version."""
    return stripe.StripeClient(
        key,
        base_addresses={"api": server.url},
        stripe_version=version,
        max_network_retries=retries,
    )


@dataclass
class Raw:
    """One raw HTTP exchange."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def error(self) -> dict[str, Any]:
        """The `error` member of an error body."""
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        error: dict[str, Any] = self.body["error"]
        return error


def raw(
    server: EmulatorServer,
    method: str,
    path: str,
    params: Sequence[tuple[str, FormValue]] | Mapping[str, FormValue] | None = None,
    *,
    key: str | None = TEST_KEY,
    version: str | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> Raw:
    """A request without the SDK: bracket-encoded parameters as a form body or query."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    if version is not None:
        sent["Stripe-Version"] = version
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params or [])
    encoded = [(name, _form(value)) for name, value in pairs]
    if method.upper() == "GET":
        response = requests.request(
            method, server.url + path, params=encoded, headers=sent, auth=auth, timeout=30
        )
    else:
        response = requests.request(
            method, server.url + path, data=encoded, headers=sent, auth=auth, timeout=30
        )
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Raw(response.status_code, body, response.headers)


def _form(value: FormValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def control(server: EmulatorServer, method: str, path: str, body: Any = None) -> Raw:
    """A call to the emulator's own `/_emulator/...` controls (JSON in, JSON out)."""
    response = requests.request(method, f"{server.url}/_emulator/{path}", json=body, timeout=30)
    return Raw(response.status_code, response.json(), response.headers)


def assert_stripe_error(
    result: Raw,
    status: int,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str = "invalid_request_error",
) -> dict[str, Any]:
    """The body is Stripe's error shape with these values."""
    assert result.status == status, (result.status, result.body)
    assert isinstance(result.body, dict) and set(result.body) == {"error"}, result.body
    error = result.error
    assert {"type", "message"} <= set(error) <= {"type", "code", "message", "param"}, error
    assert all(isinstance(value, str) and value for value in error.values()), error
    assert error["type"] == type, error
    assert error.get("code") == code, error
    assert error.get("param") == param, error
    return error


def sdk_error_body(error: stripe.StripeError) -> dict[str, Any]:
    """The `error` member of the JSON body the SDK received with an error."""
    body = error.json_body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    member: dict[str, Any] = body["error"]
    return member


def plain(value: Any) -> Any:
    """An SDK object as plain JSON data, all the way down.

    `to_dict()` stops at maps of objects (e.g. `currency_options: {"usd": CurrencyOptions}`),
    so tests compare through this instead.
    """
    if isinstance(value, stripe.StripeObject):
        value = value.to_dict(recursive=False)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def ids(items: Any) -> list[str]:
    """Ids of a page's or an iterator's objects, in order."""
    return [str(item["id"]) for item in items]


# -- Stripe's published shapes (../shared/stripe) ----------------------------------------------


@cache
def fixtures() -> dict[str, Any]:
    """`resources` of fixtures3.json: Stripe's example objects in today's shapes."""
    loaded: dict[str, Any] = json.loads((SHARED / "fixtures3.json").read_text())["resources"]
    return loaded


@cache
def current_schemas() -> dict[str, Any]:
    """The transcription of today's schemas."""
    loaded: dict[str, Any] = json.loads((SHARED / "current-schemas-2026-09-30.json").read_text())[
        "schemas"
    ]
    return loaded


@cache
def current_paths() -> dict[str, Any]:
    """The transcription's endpoints (list parameters and the list envelope)."""
    loaded: dict[str, Any] = json.loads((SHARED / "current-schemas-2026-09-30.json").read_text())[
        "paths"
    ]
    return loaded


@cache
def old_schemas() -> dict[str, Any]:
    """`components.schemas` of the 2023-08-16 OpenAPI description."""
    loaded: dict[str, Any] = json.loads((SHARED / "openapi-spec3-2023-08-16.json").read_text())[
        "components"
    ]["schemas"]
    return loaded


def json_type(value: Any) -> str:
    """The JSON type of a decoded value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    raise AssertionError(f"not a JSON value: {value!r}")


def type_matches(value: Any, expected: str) -> bool:
    """`number` admits integers (JSON Schema's rule); `integer` never admits 2.0."""
    actual = json_type(value)
    return actual == expected or (expected == "number" and actual == "integer")
