"""What a page of 100 promotion codes costs the client: SDK objects, raw_request, or plain HTTP.

Usage (from the repository root):

    .venv/bin/python benchmarks/sdk_pages.py [--codes 100000] [--pages 500] [--rounds 3]

The emulator runs as a separate process (`python -m stripe_emulator --port 0 --no-rate-limits
--seed N`: this measures the client's CPU, not Stripe's limits), pinned to one core; this
process runs on the others, so what is measured is the client's own
work per page: its CPU time (user + system, `time.process_time`) and wall time, one request at
a time. Every way reads the same pages, `GET /v1/promotion_codes?limit=100` following
`starting_after`, with the same key and pinned API version:

* `sdk list`: `client.v1.promotion_codes.list(params)`, which builds a `ListObject` of
  `PromotionCode` `StripeObject`s, then `to_dict()` on each (a `StripeObject` is not a
  mapping in SDK 16, and the rows need plain values);
* `raw_request`: `client.raw_request("get", "/v1/promotion_codes", ...)`, what the source
  used before, whose answer the SDK parses into `OrderedDict`s (`StripeResponse.data`);
* `requests + orjson`: the same HTTP library the SDK uses (one `requests.Session`), the body
  parsed with `orjson.loads`;
* `urllib3 + orjson`: one `urllib3.HTTPConnectionPool`, parsed with `orjson.loads`: what the
  source used until libcurl replaced it;
* `libcurl + orjson`: the source's own `Transport` (pycurl), parsed with `orjson.loads`: what
  the source uses now.

* `raw_request over urllib3`: `raw_request` with the SDK's pluggable transport
  (`StripeClient(http_client=...)`) a `stripe.HTTPClient` on urllib3, to tell the cost of the
  SDK's parsing from that of its HTTP library.

Each way also turns the page into the Arrow table the source hands to dlt
(`rows.objects_table`), reported in its own column. The rounds alternate the ways, so a busy
machine affects them alike; the table shows the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
# The emulator without rate limits: these benchmarks measure CPU, not Stripe's limits.
EMULATOR = [sys.executable, "-m", "stripe_emulator", "--port", "0", "--no-rate-limits"]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import requests  # noqa: E402
import stripe  # noqa: E402
import urllib3  # noqa: E402

from stripe_promotions.observation import Observation, Rank  # noqa: E402
from stripe_promotions.rows import objects_table  # noqa: E402
from stripe_promotions.settings import API_VERSION  # noqa: E402
from stripe_promotions.transport import Transport  # noqa: E402

KEY = "sk_test_benchmarkKey0123456789"
URL_LINE = re.compile(rb"http://127\.0\.0\.1:\d+")
PATH = "/v1/promotion_codes"
HEADERS = {"Authorization": f"Bearer {KEY}", "Stripe-Version": API_VERSION}

SEEN = Observation(0, Rank.READ, 0, "list", "list", API_VERSION)

Fetch = Callable[[str | None], tuple[list[Any], bool]]


def page_params(after: str | None) -> dict[str, Any]:
    """The parameters of one page: 100 objects, after the cursor if there is one."""
    return {"limit": 100, **({"starting_after": after} if after else {})}


def sdk_list(base: str) -> Fetch:
    client = stripe.StripeClient(KEY, base_addresses={"api": base}, stripe_version=API_VERSION)

    def fetch(after: str | None) -> tuple[list[Any], bool]:
        page = client.v1.promotion_codes.list(page_params(after))  # type: ignore[arg-type]
        return [code.to_dict() for code in page.data], bool(page.has_more)

    return fetch


def raw_request(base: str, http_client: stripe.HTTPClient | None = None) -> Fetch:
    client = stripe.StripeClient(
        KEY, base_addresses={"api": base}, stripe_version=API_VERSION, http_client=http_client
    )

    def fetch(after: str | None) -> tuple[list[Any], bool]:
        body: Any = client.raw_request("get", PATH, **page_params(after)).data
        return list(body["data"]), bool(body["has_more"])

    return fetch


class Urllib3Transport(stripe.HTTPClient):
    """The SDK's HTTP client interface on one urllib3 pool."""

    name = "urllib3"

    def __init__(self) -> None:
        super().__init__()
        self._pool = urllib3.PoolManager(maxsize=1, retries=False)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        answer = self._pool.request(method.upper(), url, headers=dict(headers or {}))
        return answer.data.decode(), answer.status, answer.headers


def raw_request_urllib3(base: str) -> Fetch:
    return raw_request(base, Urllib3Transport())


def requests_orjson(base: str) -> Fetch:
    session = requests.Session()

    def fetch(after: str | None) -> tuple[list[Any], bool]:
        query = urlencode(page_params(after))
        answer = session.get(f"{base}{PATH}?{query}", headers=HEADERS, timeout=60)
        body = orjson.loads(answer.content)
        return list(body["data"]), bool(body["has_more"])

    return fetch


def urllib3_orjson(base: str) -> Fetch:
    host, port = base.removeprefix("http://").split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1)

    def fetch(after: str | None) -> tuple[list[Any], bool]:
        answer = pool.request("GET", f"{PATH}?{urlencode(page_params(after))}", headers=HEADERS)
        body = orjson.loads(answer.data)
        return list(body["data"]), bool(body["has_more"])

    return fetch


def libcurl_orjson(base: str) -> Fetch:
    transport = Transport(HEADERS, timeout=60)

    def fetch(after: str | None) -> tuple[list[Any], bool]:
        url = f"{base}{PATH}?{urlencode(page_params(after))}"
        body = orjson.loads(transport.get(url, connect_timeout=10).body)
        return list(body["data"]), bool(body["has_more"])

    return fetch


WAYS: dict[str, Callable[[str], Fetch]] = {
    "sdk list (StripeObjects)": sdk_list,
    "raw_request (OrderedDicts)": raw_request,
    "raw_request over urllib3 (OrderedDicts)": raw_request_urllib3,
    "requests + orjson": requests_orjson,
    "urllib3 + orjson": urllib3_orjson,
    "libcurl + orjson (the connector)": libcurl_orjson,
}


def measure(fetch: Fetch, pages: int) -> tuple[float, float, float]:
    """Wall and CPU ms per page for fetching, and CPU ms per page for its Arrow table."""
    after: str | None = None
    fetch(None)  # warm up: connection, imports
    wall, cpu, rows_cpu = 0.0, 0.0, 0.0
    for _ in range(pages):
        started, cpu_started = time.perf_counter(), time.process_time()
        objects, more = fetch(after)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        cpu_started = time.process_time()
        objects_table("promotion_code", [(SEEN, objects)])
        rows_cpu += time.process_time() - cpu_started
        after = objects[-1]["id"] if more else None
    return wall * 1000 / pages, cpu * 1000 / pages, rows_cpu * 1000 / pages


def main(argv: list[str] | None = None) -> int:
    """Start the emulator, measure each way for a few rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--codes", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=500, help="pages per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    command = [*EMULATOR, "--seed", str(args.codes)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        match = URL_LINE.search(server.stdout.readline())
        if match is None:
            raise SystemExit("the emulator did not start")
        base = match.group().decode()
        cores = os.sched_getaffinity(0)
        if len(cores) > 1:
            os.sched_setaffinity(server.pid, {max(cores)})
            os.sched_setaffinity(0, cores - {max(cores)})
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in WAYS}
        for _ in range(args.rounds):
            for name, make in WAYS.items():
                results[name].append(measure(make(base), args.pages))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"{args.pages} pages of 100 promotion codes per way and round, median of {args.rounds} "
        f"rounds; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print()
    print("| way | wall ms/page | client CPU ms/page | Arrow table CPU ms/page | pages/s |")
    print("|---|---:|---:|---:|---:|")
    for name, figures in results.items():
        wall, cpu, rows = (statistics.median(f[i] for f in figures) for i in range(3))
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rows:.2f} | {1000 / wall:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
