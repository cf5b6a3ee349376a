"""A runbook command as a drill step (promotion 'command'), with real processes: its
output kept, its failures one line naming the fix."""

from __future__ import annotations

import pytest

from gameday.actions import _runbook
from gameday.foundation.errors import TargetError


def test_a_command_that_works_keeps_its_output_and_time() -> None:
    ran = _runbook.run(["sh", "-c", "echo promoted; echo to-stderr >&2"], timeout_s=5,
                       env={"GAMEDAY_TEST_ENV": "x"})
    _runbook.check(ran, timeout_s=5)
    assert ran.returncode == 0 and "promoted" in ran.output and "to-stderr" in ran.output
    assert ran.took_s >= 0


def test_the_descriptor_environment_reaches_the_command() -> None:
    ran = _runbook.run(["sh", "-c", "echo $PATRONICTL_CONFIG_FILE"], timeout_s=5,
                       env={"PATRONICTL_CONFIG_FILE": "/tmp/ctl.yml"})
    assert ran.output.strip() == "/tmp/ctl.yml"


def test_a_failing_command_is_one_line_with_its_last_words() -> None:
    ran = _runbook.run(["sh", "-c", "echo first; echo 'no leader to fail over from'; exit 3"],
                       timeout_s=5)
    with pytest.raises(TargetError, match=r"exited 3: no leader to fail over from$"):
        _runbook.check(ran, timeout_s=5)


def test_a_command_that_hangs_is_stopped_at_its_timeout() -> None:
    ran = _runbook.run(["sh", "-c", "echo started; sleep 30"], timeout_s=0.3)
    assert ran.returncode is None and ran.took_s < 5
    with pytest.raises(TargetError, match=r"did not finish within 0.3 s \('promotion_timeout_s'\)"):
        _runbook.check(ran, timeout_s=0.3)


def test_a_missing_program_names_the_setting_to_fix() -> None:
    ran = _runbook.run(["no-such-patronictl", "failover"], timeout_s=5)
    with pytest.raises(TargetError, match="`no-such-patronictl` was not found: install it or "
                                          "fix 'promotion_command'"):
        _runbook.check(ran, timeout_s=5)
