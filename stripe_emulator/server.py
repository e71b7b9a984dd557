"""The thin HTTP layer: parse, rate-limit, inject faults, authenticate, pick the account the
request acts on (`Stripe-Account` / `Stripe-Context`), call it, answer.

aiohttp serves it (measured against uvicorn in benchmarks/RESULTS.md; it also exposes the
transport, which dropped-connection faults need). It binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from .account import Account, check_api_version
from .collection import RequestContext
from .controls import PREFIX, ControlError, find, parse_body
from .controls import run as run_control
from .errors import StripeError
from .params import decode_form
from .rate_limits import key_mode

HOST = "127.0.0.1"
ACCOUNT = web.AppKey("account", Account)
COLLECTIONS = "coupons|products|promotion_codes|events|accounts"


@dataclass(frozen=True)
class Endpoint:
    """One row of the API: HTTP method and path to an account operation.

    `collection` is fixed for a path without `{collection}`; without `{id}`, a `retrieve` is
    of the account the request acts on (`GET /v1/account`).
    """

    method: str
    path: str
    operation: str
    collection: str | None = None


ENDPOINTS = (
    Endpoint("GET", f"/v1/{{collection:{COLLECTIONS}}}", "list"),
    Endpoint("POST", f"/v1/{{collection:{COLLECTIONS}}}", "create"),
    Endpoint("GET", f"/v1/{{collection:{COLLECTIONS}}}/{{id}}", "retrieve"),
    Endpoint("POST", f"/v1/{{collection:{COLLECTIONS}}}/{{id}}", "update"),
    Endpoint("DELETE", f"/v1/{{collection:{COLLECTIONS}}}/{{id}}", "delete"),
    Endpoint("GET", "/v1/account", "retrieve", collection="accounts"),
)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response (orjson: pages of 100 objects are the hot path)."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def api_key(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer <key>` or HTTP Basic `<key>:`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().partition(":")[0] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


async def request_params(request: web.Request) -> dict[str, Any]:
    """Query string and form body, bracket notation decoded."""
    pairs = list(parse_qsl(request.query_string, keep_blank_values=True))
    if request.can_read_body:
        pairs += parse_qsl(await request.text(), keep_blank_values=True)
    return decode_form(pairs)


def make_api_handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler for one endpoint row."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve_api(request, endpoint.operation, endpoint.collection)

    return handle


def operation_name(request: web.Request) -> str:
    """The named operation, e.g. `GET /v1/promotion_codes/{id}`: request counts, rate limits."""
    route = request.match_info.route.resource
    template = route.canonical if route else request.path
    collection = request.match_info.get("collection")
    if collection:  # per kind: `GET /v1/coupons`, not `GET /v1/{collection}`
        template = template.replace("{collection}", collection)
    return f"{request.method} {template}"


async def serve_api(
    request: web.Request, operation: str | None, fixed_collection: str | None = None
) -> web.StreamResponse:
    """Rate limits and faults, then auth, the account acted on, version and parameters, then
    that account's answer."""
    account = request.app[ACCOUNT]
    collection = request.match_info.get("collection") or fixed_collection
    name = operation_name(request)
    account.requests[name] += 1
    # None when absent; an empty value is a value (it names no account).
    stripe_account = request.headers.get("Stripe-Account")
    stripe_context = request.headers.get("Stripe-Context")
    request_id = "req_" + uuid.uuid4().hex[:14]
    headers = {
        "Request-Id": request_id,
        "Date": email.utils.formatdate(account.clock.now(), usegmt=True),
    }
    # Limits count a request when it arrives, before any injected latency; an unknown URL
    # counts account-wide only.
    decision = account.rate_limits.admit(
        key_mode(api_key(request)),
        name if operation is not None else None,
        account.budget_for(stripe_account, stripe_context),
    )
    plan = account.faults.plan(failures=decision.admitted)
    if plan.latency:
        await asyncio.sleep(plan.latency)
    if plan.outcome == "drop":
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError
    try:
        if not decision.admitted:
            raise StripeError(429, decision.message, code="rate_limit")
        if plan.outcome == "server_error":
            raise StripeError(500, "An unknown error occurred", type="api_error")
        write = request.method != "GET"
        key = api_key(request)
        account.keys.check(key, write=write, resource=(collection or "resource").rstrip("s"))
        # The platform's own account, or the connected account the headers name (else 403).
        target = account.for_request(stripe_account, stripe_context, key)
        version = check_api_version(request.headers.get("Stripe-Version") or target.api_version)
        headers["Stripe-Version"] = version
        if operation is None:
            raise StripeError(
                404,
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            )
        idempotency_key = request.headers.get("Idempotency-Key") if write else None
        replay = target.idempotency.get(idempotency_key) if idempotency_key else None
        if replay is not None:
            return json_response(replay[1], replay[0], {**headers, "Idempotent-Replayed": "true"})
        params = await request_params(request)
        ctx = RequestContext(version, request_id, idempotency_key, key)
        object_id = request.match_info.get("id") or (target.id if fixed_collection else None)
        try:
            body = target.handle(str(collection), operation, object_id, params, ctx)
            status = 200
        except StripeError as error:
            if not idempotency_key:
                raise
            body, status = error.body(), error.status
        if idempotency_key:
            target.idempotency[idempotency_key] = (status, body)
        return json_response(body, status, headers)
    except StripeError as error:
        return json_response(error.body(), error.status, headers)


async def unrecognized(request: web.Request) -> web.StreamResponse:
    """Any other URL under /v1: Stripe's 404, after auth as Stripe does."""
    return await serve_api(request, None)


# -- controls for tests, the demo and benchmarks (JSON in, JSON out; table in controls.py) ------


async def serve_control(request: web.Request) -> web.Response:
    """Any path under /_emulator: its row in `controls.CONTROLS`, else a 404/405 with a hint."""
    try:
        control, match = find(request.method, request.path)
        text = await request.text() if request.can_read_body else ""
        content_type = request.content_type if text else ""
        body = parse_body(text, content_type, control, str(request.url.origin()))
    except ControlError as error:
        headers = {"Allow": ", ".join(error.allow)} if error.allow else None
        return json_response(error.body(), error.status, headers)
    status, answer = run_control(request.app[ACCOUNT], control, body, match)
    return json_response(answer, status)


def build_app(account: Account) -> web.Application:
    """The aiohttp application serving `account`."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[ACCOUNT] = account
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, make_api_handler(endpoint))
    # One route for every control: `find` reads the table, so a near miss gets a hint.
    app.router.add_route("*", PREFIX, serve_control)
    app.router.add_route("*", PREFIX + "/{tail:.*}", serve_control)
    app.router.add_route("*", "/v1", unrecognized)
    app.router.add_route("*", "/v1/{tail:.*}", unrecognized)
    return app


class EmulatorServer:
    """The emulator serving HTTP from a background thread; `url` is its base address."""

    def __init__(self, account: Account | None = None, port: int = 0) -> None:
        self.account = account or Account()
        self._requested_port = port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL for `stripe.StripeClient(..., base_addresses={"api": url})`."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> EmulatorServer:
        """Bind and serve; returns once requests are accepted."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(build_app(self.account), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self._requested_port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve(account: Account | None = None, port: int = 0) -> Iterator[EmulatorServer]:
    """Run the emulator in-process for the duration of a `with` block."""
    with EmulatorServer(account, port) as server:
        yield server
