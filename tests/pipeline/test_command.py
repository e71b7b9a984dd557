"""The command as users run it: a subprocess, its exit code, its output; errors say what to fix."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
import stripe

from stripe_emulator.server import EmulatorServer
from stripe_promotions import RunStats
from stripe_promotions_pipeline.progress import Progress
from tests.support import TEST_KEY, run_command

ROOT = Path(__file__).resolve().parents[2]
# Small pages and few attempts: a listing makes many requests, and gives up soon under 500s.
SMALL_PAGES_FEW_ATTEMPTS = {"SOURCES__STRIPE__PAGE_SIZE": "5", "SOURCES__STRIPE__MAX_ATTEMPTS": "5"}


@pytest.fixture
def seeded(stripe_emulator: EmulatorServer) -> EmulatorServer:
    stripe_emulator.account.seed(preset="demo")
    return stripe_emulator


def test_incremental_run_writes_stripe_pipeline_duckdb_and_summarises(
    seeded: EmulatorServer, tmp_path: Path
) -> None:
    done = run_command("--api-base", seeded.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "stripe_pipeline.duckdb").exists()
    assert not (tmp_path / "stripe.duckdb").exists()
    out = done.stdout
    assert "Incremental sync done" in out and "Stripe API requests" in out
    assert "promotion_codes" in out and "Data: " in out and "Try:" in out
    assert TEST_KEY not in out + done.stderr


def test_verbs_as_subcommands(
    seeded: EmulatorServer, client: stripe.StripeClient, tmp_path: Path
) -> None:
    url = ["--api-base", seeded.url, "--quiet"]
    assert run_command(*url, cwd=tmp_path).returncode == 0
    coupon = client.v1.coupons.list(params={"limit": 1}).data[0].to_dict()
    batch = tmp_path / "coupons.json"
    batch.write_text(json.dumps([coupon]))
    for args in (
        ["sync-all", "--type", "coupon", "--type", "product"],
        ["sync-ids", "--type", "coupon", coupon["id"], "NOPE"],
        ["sync-batch", "--type", "coupon", str(batch)],
        ["soft-delete", "--type", "coupon", coupon["id"], "--reason", "test"],
        ["transform"],
    ):
        done = run_command(*url, *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
    assert "stripe.coupons" in done.stdout


def test_global_options_also_follow_the_subcommand_and_transform_counts_the_table(
    seeded: EmulatorServer, client: stripe.StripeClient, tmp_path: Path
) -> None:
    assert run_command("--quiet", "--api-base", seeded.url, cwd=tmp_path).returncode == 0
    client.v1.coupons.delete(client.v1.coupons.list(params={"limit": 1}).data[0].id)
    done = run_command(
        "sync-all", "--type", "coupon", "--api-base", seeded.url, "--quiet", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    sql = "SELECT COUNT(*) AS n FROM stripe.coupons WHERE is_deleted"
    flagged = run_command("query", "--csv", sql, cwd=tmp_path)
    assert flagged.returncode == 0, flagged.stderr
    deleted = int(flagged.stdout.split()[1])
    assert deleted >= 1
    total = run_command("transform", cwd=tmp_path)
    assert total.returncode == 0, total.stderr
    assert f"({deleted:,} flagged deleted)" in total.stdout.splitlines()[0]


def test_transform_recomputes_what_moved_and_full_rebuilds_the_same_tables(
    seeded: EmulatorServer, client: stripe.StripeClient, tmp_path: Path
) -> None:
    """After a run, `transform` has nothing to recompute; after a change loaded, only that
    object; `transform --full` recomputes every object and gives the same tables."""
    assert run_command("--quiet", "--api-base", seeded.url, cwd=tmp_path).returncode == 0
    idle = run_command("transform", cwd=tmp_path)
    assert idle.returncode == 0, idle.stderr
    assert [line.endswith(", 0 recomputed") for line in idle.stdout.splitlines()] == [True] * 3
    code = client.v1.promotion_codes.list(params={"limit": 1}).data[0]
    client.v1.promotion_codes.update(code.id, params={"metadata": {"changed": "yes"}})
    done = run_command("--quiet", "--api-base", seeded.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    codes = next(line for line in done.stdout.splitlines() if line.strip().startswith("promo"))
    assert codes.split()[2] == "1" and codes.split()[-1] == "1", done.stdout  # updated, recomputed
    sql = "SELECT * FROM stripe.{} ORDER BY ALL"
    tables = ("coupons", "products", "promotion_codes_history", "coupons_history")
    before = [
        run_command("query", "--csv", "--limit", "100000", sql.format(t), cwd=tmp_path)
        for t in tables
    ]
    full = run_command("transform", "--full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    for line in full.stdout.splitlines():
        rows = line.split(": ", 1)[1].split(" rows", 1)[0]
        assert line.endswith(f", {rows} recomputed"), line
    after = [
        run_command("query", "--csv", "--limit", "100000", sql.format(t), cwd=tmp_path)
        for t in tables
    ]
    assert [b.stdout for b in before] == [a.stdout for a in after]
    assert all(b.returncode == 0 and b.stdout.count("\n") > 1 for b in before)


def test_the_summary_suggests_a_query_that_works_from_the_project_alone(
    seeded: EmulatorServer, tmp_path: Path
) -> None:
    done = run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path)
    (suggested,) = [line for line in done.stdout.splitlines() if line.startswith("Try:")]
    assert "duckdb -readonly" not in suggested
    sql = suggested.split(" query ", 1)[1].strip().strip('"')
    answered = run_command("query", sql, cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    assert "redeemable" in answered.stdout and "status" in answered.stdout
    broken = run_command("query", "SELECT nope FROM stripe.coupons", cwd=tmp_path)
    assert broken.returncode == 1 and "The query failed" in broken.stderr


def test_help_explains_the_command(tmp_path: Path) -> None:
    done = run_command("--help", cwd=tmp_path, key=None)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "Without a subcommand: an incremental load" in text
    assert "STRIPE_API_KEY" in text and "before or after the subcommand" in text
    for subcommand in ("sync-all", "sync-ids", "sync-batch", "soft-delete", "transform", "query"):
        assert subcommand in text
    sub = " ".join(run_command("sync-ids", "--help", cwd=tmp_path, key=None).stdout.split())
    assert "object type: coupon, product or promotion_code" in sub and "Stripe ids" in sub
    assert "--destination" in sub  # global options are taken after the subcommand too


def test_soft_delete_of_a_typo_is_refused_with_a_way_out(
    seeded: EmulatorServer, tmp_path: Path
) -> None:
    assert run_command("--api-base", seeded.url, "--quiet", cwd=tmp_path).returncode == 0
    refused = run_command("soft-delete", "--type", "product", "prod_TYPO", cwd=tmp_path)
    assert refused.returncode == 1
    assert "Never seen by this pipeline" in refused.stderr and "--force" in refused.stderr
    sql = "SELECT COUNT(*) AS n FROM stripe.products WHERE id = 'prod_TYPO'"
    assert run_command("query", "--csv", sql, cwd=tmp_path).stdout.split() == ["n", "0"]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = run_command("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout and "stripe.promotion_codes" in done.stdout
    assert (tmp_path / "stripe_demo.duckdb").exists()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "env", "key", "says"),
    [
        (["bogus-command"], {}, TEST_KEY, "invalid choice"),
        (["sync-ids", "--type", "voucher", "X"], {}, TEST_KEY, "invalid choice"),
        (["sync-ids", "--type", "coupon"], {}, TEST_KEY, "the following arguments are required"),
        ([], {}, None, "No Stripe API key"),
        ([], {}, "pk_test_publishable123", "malformed"),
        ([], {"SOURCES__STRIPE__START_DATE": "last tuesday"}, TEST_KEY, "start_date"),
        ([], {"SOURCES__STRIPE__API_BASE": "ftp://example"}, TEST_KEY, "not an http(s) URL"),
        (["--destination", "oracle9i"], {}, TEST_KEY, "Unknown destination"),
    ],
)
def test_bad_input_gets_a_clear_message_and_nonzero_exit(
    args: list[str], env: dict[str, str], key: str | None, says: str, tmp_path: Path
) -> None:
    done = run_command(*args, cwd=tmp_path, env=env, key=key)
    assert done.returncode != 0
    assert says in done.stderr, done.stderr
    if key:
        assert key not in done.stdout + done.stderr


def test_the_configured_object_types_limit_a_run_and_a_sync_all(
    seeded: EmulatorServer, tmp_path: Path
) -> None:
    """`sources.stripe.object_types` (SOURCES__STRIPE__OBJECT_TYPES) is what a run reads."""
    only = {"SOURCES__STRIPE__OBJECT_TYPES": '["coupon", "product"]'}
    for args in ([], ["sync-all"]):
        seeded.account.requests.clear()
        done = run_command("--api-base", seeded.url, "--quiet", *args, cwd=tmp_path, env=only)
        assert done.returncode == 0, done.stderr
        asked = set(seeded.account.requests)
        assert "GET /v1/coupons" in asked and "GET /v1/products" in asked, asked
        assert not any("promotion_codes" in operation for operation in asked), asked
    loaded = run_command(
        "query", "--csv", "SELECT COUNT(*) AS n FROM stripe_raw.promotion_codes", cwd=tmp_path
    )
    assert loaded.stdout.split() == ["n", "0"]


@pytest.mark.parametrize(
    ("key", "says"), [(None, "No Stripe API key"), ("sk_test_bad key", "malformed")]
)
def test_a_key_problem_is_reported_before_any_work_starts(
    key: str | None, says: str, tmp_path: Path
) -> None:
    done = run_command("--api-base", "http://127.0.0.1:9", cwd=tmp_path, key=key)
    assert done.returncode == 1 and says in done.stderr
    assert "extracting" not in done.stderr  # no progress line for work that never started


def test_unreachable_api_base_gives_up_after_three_attempts(tmp_path: Path) -> None:
    # The default max_attempts (8, about a minute of backoff) is for a Stripe that has answered.
    done = run_command("--api-base", f"http://127.0.0.1:{closed_port()}", cwd=tmp_path)
    assert done.returncode == 1
    assert "Cannot reach Stripe" in done.stderr and "after 3 attempts" in done.stderr


def test_a_base_that_never_answers_is_tried_three_times(tmp_path: Path) -> None:
    """A server that accepts connections and hangs up: each attempt is one connection."""
    accepted = 0
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        stop = threading.Event()

        def hang_up() -> None:
            nonlocal accepted
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                accepted += 1
                connection.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        try:
            port = listener.getsockname()[1]
            done = run_command("--api-base", f"http://127.0.0.1:{port}", cwd=tmp_path)
        finally:
            stop.set()
            thread.join()
    assert done.returncode == 1
    assert "Cannot reach Stripe" in done.stderr and "after 3 attempts" in done.stderr
    assert accepted == 3


@pytest.mark.parametrize(
    ("access", "says"), [("revoked", "refused the API key"), ("none", "may not read")]
)
def test_revoked_and_restricted_keys(
    stripe_emulator: EmulatorServer, tmp_path: Path, access: str, says: str
) -> None:
    key = "rk_live_restrictedKey4242"
    stripe_emulator.account.keys.set_access(key, access)  # type: ignore[arg-type]
    done = run_command("--api-base", stripe_emulator.url, cwd=tmp_path, key=key)
    assert done.returncode == 1
    assert says in done.stderr
    assert key not in done.stdout + done.stderr


def test_read_only_key_is_enough(stripe_emulator: EmulatorServer, tmp_path: Path) -> None:
    key = "rk_test_readOnlyKey4242"
    stripe_emulator.account.keys.set_access(key, "read_only")
    done = run_command("--api-base", stripe_emulator.url, "--quiet", cwd=tmp_path, key=key)
    assert done.returncode == 0, done.stderr


def test_retries_exhausted_on_500s_names_the_id(
    stripe_emulator: EmulatorServer, tmp_path: Path
) -> None:
    first = run_command("--api-base", stripe_emulator.url, "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr  # the key's own account id is known from now on
    stripe_emulator.account.faults.configure(error_rate=1.0)
    done = run_command(
        "--api-base",
        stripe_emulator.url,
        "sync-ids",
        "--type",
        "coupon",
        "SUMMER",
        cwd=tmp_path,
        env={"SOURCES__STRIPE__MAX_ATTEMPTS": "2"},
    )
    assert done.returncode == 1
    assert "'SUMMER'" in done.stderr and "500" in done.stderr


def test_a_run_that_fails_mid_listing_stops_every_thread_without_dlts_warning(
    stripe_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """One listing gives up: the others stop too, so dlt's thread pool shuts down cleanly."""
    stripe_emulator.account.seed(promotion_codes=400, coupons=40, products=40)
    stripe_emulator.account.faults.configure(error_rate=0.6)
    done = run_command(
        "--api-base", stripe_emulator.url, cwd=tmp_path, env=SMALL_PAGES_FEW_ATTEMPTS
    )
    assert done.returncode == 1 and "Stripe kept failing (500)" in done.stderr
    assert "lock indefinitely" not in done.stderr and "thread pool" not in done.stderr


def test_the_progress_line_reads_well() -> None:
    stats = RunStats()
    stats.rows["products/list"] = 15
    progress = Progress(stats, enabled=False)
    progress.phase = "transforming"
    line = progress.line().plain
    assert line.startswith("transforming products 15")
    assert "(0 requests," in line


def test_bad_batch_file_names_every_bad_item(tmp_path: Path) -> None:
    batch = tmp_path / "bad.jsonl"
    batch.write_text(
        '{"object": "coupon", "id": "OK", "created": 1}\n'
        '{"object": "product", "id": "prod_1", "created": 1}\n'
        '{"object": "coupon", "created": 1}\n'
    )
    done = run_command("sync-batch", "--type", "coupon", str(batch), cwd=tmp_path)
    assert done.returncode == 1
    assert "item 1 (prod_1)" in done.stderr and "item 2" in done.stderr
    assert not (tmp_path / "stripe_pipeline.duckdb").exists()
    not_json = tmp_path / "x.json"
    not_json.write_text("coupons, lots of them")
    done = run_command("sync-batch", "--type", "coupon", str(not_json), cwd=tmp_path)
    assert done.returncode == 1 and "not JSON" in done.stderr
