"""The controls can be found: `GET /_emulator`, hints for near misses, `--help`, the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import requests

from stripe_emulator.controls import CONTROLS, markdown_table
from stripe_emulator.server import EmulatorServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "stripe_emulator" / "README.md"
EVERY_CONTROL = {(control.method, control.path) for control in CONTROLS}


def test_listing_names_every_control_with_its_body(stripe_emulator: EmulatorServer) -> None:
    for path in ("/_emulator", "/_emulator/"):
        answer = requests.get(stripe_emulator.url + path, timeout=10)
        assert answer.status_code == 200, answer.text
        listed = answer.json()["controls"]
        assert {(c["method"], c["path"]) for c in listed} == EVERY_CONTROL
    assert ("POST", "/_emulator/clock") in EVERY_CONTROL
    assert ("POST", "/_emulator/promotion_codes/{id}/redeem") in EVERY_CONTROL
    for control in listed:
        assert control["does"] and control["answers"], control
        for name, field in control["body"].items():
            assert field["type"] and field["meaning"] and "required" in field, (name, field)
        if control["body"]:
            assert control["example"] and set(control["example"]) <= set(control["body"])


def test_every_listed_example_is_accepted(stripe_emulator: EmulatorServer) -> None:
    listed = requests.get(f"{stripe_emulator.url}/_emulator", timeout=10).json()["controls"]
    for control in listed:
        path = control["path"].replace("{id}", "promo_nope").replace("{kind}", "coupon")
        answer = requests.request(
            control["method"], stripe_emulator.url + path, json=control["example"], timeout=30
        )
        if "{id}" in control["path"]:  # a real control, answering for an unknown code
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "resource_missing"
        else:
            assert answer.status_code == 200, (control, answer.text)


def test_a_near_miss_names_the_control_it_meant(stripe_emulator: EmulatorServer) -> None:
    clock = requests.post(
        f"{stripe_emulator.url}/_emulator/advance_clock", json={"advance": 60}, timeout=10
    )
    assert clock.status_code == 404
    assert clock.json() == {
        "error": {
            "message": "No emulator control POST /_emulator/advance_clock. Did you mean "
            'POST /_emulator/clock {"advance": seconds}? GET /_emulator lists every control.'
        }
    }
    redeem = requests.post(f"{stripe_emulator.url}/_emulator/redeem", timeout=10)
    assert redeem.status_code == 404
    assert (
        "Did you mean POST /_emulator/promotion_codes/{id}/redeem?"
        in (redeem.json()["error"]["message"])
    )
    nothing = requests.get(f"{stripe_emulator.url}/_emulator/xyzzy", timeout=10)
    assert nothing.status_code == 404
    assert nothing.json()["error"]["message"] == (
        "No emulator control GET /_emulator/xyzzy. GET /_emulator lists every control."
    )


def test_a_wrong_method_says_which_methods_the_path_takes(
    stripe_emulator: EmulatorServer,
) -> None:
    reset = requests.get(f"{stripe_emulator.url}/_emulator/reset", timeout=10)
    assert reset.status_code == 405 and reset.headers["Allow"] == "POST"
    assert reset.json()["error"]["message"].startswith(
        "No emulator control GET /_emulator/reset: /_emulator/reset takes POST."
    )
    clock = requests.delete(f"{stripe_emulator.url}/_emulator/clock", timeout=10)
    assert clock.status_code == 405 and clock.headers["Allow"] == "GET, POST"
    assert 'takes GET or POST {"advance": seconds' in clock.json()["error"]["message"]


def test_a_form_body_is_refused_with_what_to_send(stripe_emulator: EmulatorServer) -> None:
    before = stripe_emulator.account.clock.now()
    form = requests.post(
        f"{stripe_emulator.url}/_emulator/clock", data={"advance": 86400}, timeout=10
    )
    assert form.status_code == 400
    message = form.json()["error"]["message"]
    assert message.startswith(
        'The body must be a JSON object, e.g. {"advance": 3600}; got a form/urlencoded body '
        "(Content-Type: application/x-www-form-urlencoded)."
    ), message
    assert "Expecting value" not in message
    assert stripe_emulator.account.clock.now() - before < 60
    # `curl -d '{...}'` sends JSON labelled as a form: the JSON is what counts.
    labelled = requests.post(
        f"{stripe_emulator.url}/_emulator/clock",
        data='{"advance": 86400}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert labelled.status_code == 200 and labelled.json()["now"] - before >= 86400
    array = requests.post(f"{stripe_emulator.url}/_emulator/clock", json=[1], timeout=10)
    assert array.status_code == 400 and "got a JSON array" in array.json()["error"]["message"]
    bodiless = requests.post(f"{stripe_emulator.url}/_emulator/reset", data={"a": 1}, timeout=10)
    assert bodiless.status_code == 400
    assert "POST /_emulator/reset takes no body" in bodiless.json()["error"]["message"]


def test_unknown_and_missing_names_are_refused(stripe_emulator: EmulatorServer) -> None:
    typo = requests.post(f"{stripe_emulator.url}/_emulator/clock", json={"advnce": 60}, timeout=10)
    assert typo.status_code == 400
    assert typo.json()["error"]["message"] == (
        "POST /_emulator/clock takes advance, freeze; not 'advnce'. Did you mean 'advance'?"
    )
    missing = requests.post(f"{stripe_emulator.url}/_emulator/api_version", json={}, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == (
        'POST /_emulator/api_version needs api_version, e.g. {"api_version": "2024-06-20"}.'
    )


def test_help_names_the_keys_and_the_controls() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stripe_emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for words in ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "401", "--test-rate-limit"):
        assert words in text, words
    for method, path in EVERY_CONTROL:
        assert re.search(rf"^  {method} {re.escape(path)}( |$)", text, re.M), (method, path)


def test_readme_table_is_the_controls_table() -> None:
    readme = README.read_text()
    start = readme.index("<!-- controls table:")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- end of controls table")]
    documented = set(re.findall(r"^\| `(GET|POST|DELETE) (/_emulator\S*)` \|", table, re.M))
    assert documented == EVERY_CONTROL
    assert table.strip() == markdown_table(), (
        "stripe_emulator/README.md's controls table differs from stripe_emulator/controls.py: "
        "paste the output of markdown_table() between its markers"
    )
