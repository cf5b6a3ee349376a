"""`lab up` refuses early, with the fix, and creates nothing: no root, a missing program."""

from __future__ import annotations

from pathlib import Path

import pytest

from gameday.foundation.errors import LabError
from gameday.labs.netns import lab


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GAMEDAY_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_without_root_it_says_so(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        lab.up()
    assert not state.exists()


def test_a_missing_program_is_named_with_its_package(state: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    real = lab.shutil.which
    monkeypatch.setattr(lab.shutil, "which", lambda p: None if p == "pdns_server" else real(p))
    with pytest.raises(LabError, match=r"`pdns_server` is missing: run `make setup`.*pdns-server"):
        lab.up()
    assert not state.exists()


def test_bad_options_are_refused(state: Path) -> None:
    with pytest.raises(Exception, match="replication must be"):
        lab.up(lab.LabOptions(replication="maybe"))
    assert not state.exists()


@pytest.mark.parametrize("program", ["patroni", "patronictl", "etcd"])
def test_the_ha_profile_names_what_is_missing(state: Path, monkeypatch: pytest.MonkeyPatch,
                                              program: str) -> None:
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    real = lab.shutil.which
    monkeypatch.setattr(lab.shutil, "which", lambda p: None if p == program else real(p))
    with pytest.raises(LabError, match=rf"`{program}` is missing: run `make setup`"):
        lab.up(lab.LabOptions(ha="patroni"))
    assert not state.exists()


def test_patroni_timing_must_let_the_leader_refresh_its_key(state: Path) -> None:
    from gameday.labs.netns.patroni import PatroniOptions

    with pytest.raises(Exception, match=r"loop_wait \+ 2 × retry_timeout <= ttl"):
        lab.up(lab.LabOptions(ha="patroni", patroni=PatroniOptions(ttl_s=5, loop_wait_s=1,
                                                                   retry_timeout_s=3)))
    assert not state.exists()
