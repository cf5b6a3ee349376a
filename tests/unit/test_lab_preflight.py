"""`lab up` refuses early, with the fix, and creates nothing: no root, a missing program."""

from __future__ import annotations

from pathlib import Path

import pytest

from gameday.errors import LabError
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
