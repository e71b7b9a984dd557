"""One HTTP GET at a time per thread, over keep-alive connections: libcurl through pycurl.

The connector's only use of the network. A request costs about 0.1 ms of CPU through libcurl
against 0.3 ms through urllib3, whose request path and header parsing are pure Python (a page
in all, parsed: 0.27 against 0.52 ms, benchmarks/RESULTS.md); libcurl also releases the GIL
for the whole exchange. When a reused keep-alive connection turns out closed before any
answer, libcurl sends the request again once on a new connection (no option turns that off).
Proxies come from the environment as libcurl reads them (`https_proxy`, `no_proxy`, ...); TLS
is verified against certifi's roots, the set requests and the stripe SDK use.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import certifi
import pycurl

USER_AGENT = f"stripe-promotions-pipeline ({pycurl.version.split()[0]})"


class TransportError(Exception):
    """No answer: refused, dropped, timed out, or TLS failed; the message is libcurl's."""


@dataclass(frozen=True)
class Response:
    """What a request needs from an answer: status, body, and two headers."""

    status: int
    body: bytes
    date: str | None
    request_id: str | None


class Transport:
    """GETs with fixed headers; each call borrows an idle libcurl handle (and its connection).

    A libcurl handle may serve one thread at a time, so idle ones wait in a list: threads of
    later listings reuse their connections instead of opening new ones.
    """

    def __init__(self, headers: Mapping[str, str], timeout: float) -> None:
        self._headers = [f"{name}: {value}" for name, value in headers.items()]
        self._timeout = timeout
        self._idle: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def get(self, url: str, connect_timeout: float) -> Response:
        """One GET, connecting for at most `connect_timeout` seconds (a reused connection needs
        none); `TransportError` if no answer came."""
        curl = self._borrow()
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(connect_timeout * 1000))
        chunks: list[bytes] = []
        found: dict[str, str] = {}

        def header(line: bytes) -> None:
            name, colon, value = line.partition(b":")
            if colon and name.lower() in WANTED:
                found[name.lower().decode()] = value.strip().decode("latin-1")

        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEFUNCTION, chunks.append)
        curl.setopt(pycurl.HEADERFUNCTION, header)
        try:
            curl.perform()
        except pycurl.error as failed:
            curl.close()  # its connection may be in any state: never reuse it
            code, message = failed.args if len(failed.args) == 2 else (0, str(failed))
            raise TransportError(f"{message} (curl error {code})") from None
        status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        body = b"".join(chunks)
        chunks.clear()  # the idle handle's callback keeps the list until its next request
        with self._lock:
            self._idle.append(curl)
        return Response(status, body, found.get("date"), found.get("request-id"))

    def _borrow(self) -> pycurl.Curl:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        curl = pycurl.Curl()
        curl.setopt(pycurl.HTTPHEADER, self._headers)
        curl.setopt(pycurl.USERAGENT, USER_AGENT)
        curl.setopt(pycurl.ACCEPT_ENCODING, "")  # every encoding libcurl decodes
        curl.setopt(pycurl.CAINFO, certifi.where())
        curl.setopt(pycurl.TIMEOUT_MS, int(self._timeout * 1000))
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without signals: required with threads
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        return curl


WANTED = frozenset({b"date", b"request-id"})
