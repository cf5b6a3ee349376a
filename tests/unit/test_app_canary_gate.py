"""The readiness gate asks the application canary's read-back before the first fault
(issue 23): through the global name, as the drill will; one that does not answer, breaks
its contract or returns numbers the canary never sent is a problem the gate names, so the
drill stops before anything is injected.

The application is the lab's storefront (its real HTTP server, over an in-memory store at
its `Store` seam); the global name is a UDP responder of the test's own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gameday.drill import checks, gate
from gameday.foundation.settings import GamedaySettings
from gameday.measure import app_canary
from tests.unit import fakes, test_probes_control
from tests.unit.test_storefront_canary import MemoryStore, serving

dns_server = test_probes_control.dns_server  # the global name's responder, a fixture

ENDPOINTS = {"write": {"path": "/canary/{seq}", "headers": {"X-Canary-Writer": "{writer}"}},
             "read_back": {"path": "/canary?since={since}&limit={limit}"}}


@pytest.fixture
def shop() -> Iterator[tuple[MemoryStore, str]]:
    store = MemoryStore()
    with serving(store) as url:
        yield store, url


def settings_for(tmp_path: Path, storefront_url: str, dns_port: int) -> GamedaySettings:
    """A lab whose global name answers 127.0.0.1, region-1's address, where its storefront
    listens on `storefront_url`."""
    lab = fakes.descriptor_dict(storefront=(storefront_url, "http://127.0.0.1:9"),
                                dns_port=dns_port)
    lab["regions"][0]["address"] = "127.0.0.1"
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(lab))
    return GamedaySettings.from_chaos({"lab_file": str(path), "app_canary": ENDPOINTS})


def test_a_read_back_that_answers_with_nothing_of_this_run_passes(
        tmp_path: Path, shop: Any, dns_server: Any) -> None:
    store, url = shop
    settings = settings_for(tmp_path, url, dns_server[0])
    dns_server[1][:] = ["127.0.0.1"]
    since = app_canary.start_seq() - 1
    store.seqs[since - 10] = "an earlier run"
    assert settings.app_canary is not None
    assert checks.app_read_back_problem(settings.load_lab(), settings.app_canary,
                                        since) is None


def test_a_read_back_that_returns_a_number_never_sent_is_named(
        tmp_path: Path, shop: Any, dns_server: Any) -> None:
    store, url = shop
    settings = settings_for(tmp_path, url, dns_server[0])
    dns_server[1][:] = ["127.0.0.1"]
    since = app_canary.start_seq() - 1
    store.seqs[since + 7] = "not the canary"
    assert settings.app_canary is not None
    assert checks.app_read_back_problem(settings.load_lab(), settings.app_canary, since) == (
        f"the application canary's read-back returned 1 number(s) above since={since} "
        f"before the canary sent any (first: {since + 7}): it must return only the numbers "
        "the canary wrote")


def test_the_gate_names_a_read_back_that_does_not_answer(
        tmp_path: Path, shop: Any, dns_server: Any) -> None:
    store, url = shop
    dns_server[1][:] = ["127.0.0.1"]
    # the storefront's datastore is down: 503
    store.down = True
    settings = settings_for(tmp_path, url, dns_server[0])
    problems = gate.check_once(settings, settings.load_lab())
    assert [p for p in problems if "read-back" in p] == [
        f"the application canary's read-back GET {url}/canary?since="
        f"{problems[-1].split('since=')[1].split('&')[0]}&limit=1000 answered 503, not 200: "
        "check app_canary.read_back"]
    # nothing listens where the global name sends the read-back
    settings = settings_for(tmp_path, "http://127.0.0.1:9", dns_server[0])
    problems = gate.check_once(settings, settings.load_lab())
    read_back = [p for p in problems if "read-back" in p]
    assert len(read_back) == 1 and "/canary?since=" in read_back[0]
    assert read_back[0].endswith("does not answer (ConnectError): check app_canary.read_back "
                                 "and that the service is up")
    # without an application canary the gate asks no read-back
    plain = GamedaySettings.from_chaos({"lab_file": str(tmp_path / "lab.json")})
    assert not [p for p in gate.check_once(plain, plain.load_lab()) if "read-back" in p]
