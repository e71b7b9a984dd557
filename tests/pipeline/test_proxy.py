"""The connector goes through the proxy the environment names, and around it for `no_proxy`."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from stripe_emulator.server import EmulatorServer
from tests.support import Warehouse

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not via itself


class ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP proxy: GETs with an absolute URL, forwarded and counted."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")
        }
        with DIRECT.open(urllib.request.Request(self.path, headers=headers)) as answer:
            body = answer.read()
            self.send_response(answer.status)
            for name in ("Content-Type", "Date", "Request-Id"):
                if answer.headers.get(name):
                    self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A proxy on a free port, named in `http_proxy`; yields the URLs it forwarded."""
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    ForwardingProxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ForwardingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield ForwardingProxy.seen
    finally:
        server.shutdown()
        server.server_close()


def test_requests_go_through_the_proxy(
    duckdb_warehouse: Warehouse, stripe_emulator: EmulatorServer, proxy: list[str]
) -> None:
    stripe_emulator.account.seed(coupons=5, products=5, promotion_codes=30)
    result = duckdb_warehouse.run()
    assert result.stats.requests > 0
    assert len(proxy) == result.stats.requests
    assert all(url.startswith(stripe_emulator.url) for url in proxy)
    assert len(duckdb_warehouse.current("promotion_codes")) == 30


def test_no_proxy_goes_around_it(
    duckdb_warehouse: Warehouse,
    stripe_emulator: EmulatorServer,
    proxy: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    stripe_emulator.account.seed(coupons=5, products=5, promotion_codes=30)
    duckdb_warehouse.run()
    assert proxy == []
    assert len(duckdb_warehouse.current("promotion_codes")) == 30
