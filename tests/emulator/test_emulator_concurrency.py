"""Many threads creating, updating and listing at once: no lost or duplicated objects."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import stripe

from stripe_emulator.server import EmulatorServer
from tests.emulator.emulator_support import ids, sdk

WORKERS = 8
PER_WORKER = 15


def test_parallel_creates_and_lists_stay_consistent(stripe_emulator: EmulatorServer) -> None:
    # Consistency under concurrency is the subject here; rate limits have their own tests.
    stripe_emulator.account.rate_limits.configure(enabled=False)
    setup = sdk(stripe_emulator)
    setup.v1.coupons.create(params={"id": "BASE", "percent_off": 5})
    stop = threading.Event()
    problems: list[str] = []

    def create(worker: int) -> list[str]:
        client = sdk(stripe_emulator)
        made = []
        for n in range(PER_WORKER):
            coupon = client.v1.coupons.create(params={"id": f"W{worker}N{n}", "percent_off": 5})
            product = client.v1.products.create(params={"name": f"{worker}-{n}"})
            code = client.v1.promotion_codes.create(
                params={"promotion": {"type": "coupon", "coupon": "BASE"}, "code": f"W{worker}C{n}"}
            )
            client.v1.products.update(product.id, params={"metadata": {"n": str(n)}})
            made += [coupon.id, product.id, code.id]
        return made

    def watch() -> None:
        client = sdk(stripe_emulator)
        while not stop.is_set():
            for kind in ("coupons", "products", "promotion_codes", "events"):
                page = getattr(client.v1, kind).list(params={"limit": 100}).data
                seen = ids(page)
                if len(seen) != len(set(seen)):
                    problems.append(f"duplicate ids in a {kind} page")
                keys = [item["created"] for item in page]
                if keys != sorted(keys, reverse=True):
                    problems.append(f"{kind} page not newest first")

    watchers = [threading.Thread(target=watch) for _ in range(2)]
    for watcher in watchers:
        watcher.start()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            made = [i for batch in pool.map(create, range(WORKERS)) for i in batch]
    finally:
        stop.set()
        for watcher in watchers:
            watcher.join()
    assert problems == []

    client = sdk(stripe_emulator)

    def everything(kind: str) -> list[str]:
        listed: Any = getattr(client.v1, kind).list(params={"limit": 100})
        return ids(listed.auto_paging_iter())

    total = WORKERS * PER_WORKER
    coupons, products, codes = (
        everything("coupons"),
        everything("products"),
        everything("promotion_codes"),
    )
    assert len(coupons) == len(set(coupons)) == total + 1
    assert len(products) == len(set(products)) == total
    assert len(codes) == len(set(codes)) == total
    assert sorted(made) == sorted([c for c in coupons if c != "BASE"] + products + codes)
    events = everything("events")
    assert len(events) == len(set(events)) == 1 + 4 * total
    updated = client.v1.events.list(params={"type": "product.updated", "limit": 100})
    assert len(ids(updated.auto_paging_iter())) == total
    # Each object has exactly one creation event.
    created = [
        e["data"]["object"]["id"]
        for e in client.v1.events.list(
            params={"type": "*.created", "limit": 100}
        ).auto_paging_iter()
    ]
    assert sorted(created) == sorted(coupons + products + codes)


def test_parallel_duplicate_codes_admit_exactly_one(stripe_emulator: EmulatorServer) -> None:
    sdk(stripe_emulator).v1.coupons.create(params={"id": "ONE", "percent_off": 5})

    def attempt(n: int) -> bool:
        try:
            sdk(stripe_emulator).v1.promotion_codes.create(
                params={
                    "promotion": {"type": "coupon", "coupon": "ONE"},
                    "code": "race" if n % 2 else "RACE",
                }
            )
        except stripe.InvalidRequestError as error:
            assert error.code == "resource_already_exists"
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    assert outcomes.count(True) == 1
    assert len(stripe_emulator.account.state("promotion_code")) == 1
