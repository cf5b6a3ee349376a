"""`gameday recover`: after a runner was killed (SIGKILL, a crash, a lost machine), undo
exactly what the fault ledger records and leave one writable primary.

Idempotent: a second call finds nothing open and changes nothing.
"""

from __future__ import annotations

from typing import Any

from gameday.labs import descriptor
from gameday.labs.ledger import Ledger


def recover(lab_file: str | None = None, configuration: dict[str, Any] | None = None) -> list[str]:
    from gameday.actions.database import restore_writable_primary
    from gameday.actions.region import revert_open_faults

    lab = descriptor.load(lab_file)
    done = [f"reverted {item}" for item in revert_open_faults(lab, None, configuration)]
    result = restore_writable_primary(lab, configuration)
    done += result["changed"] or []
    return done


def open_faults(lab_file: str | None = None) -> list[dict[str, Any]]:
    lab = descriptor.load(lab_file)
    return Ledger(lab.path).open_faults()
