"""One exception tree, so that callers catch one base and the edges translate it.

    GamedayError
    ├── ConfigError     bad experiment configuration, descriptor or argument: fix the input
    ├── LabError        the lab (or a region) is not in the state the step needs (not
    │   │               root, a missing program: the message says which)
    │   └── LabBusy     another drill holds the lab's lock (foundation/lock.py)
    ├── TargetError     a target system did not answer or refused the change
    └── Interrupted     Ctrl-C, SIGTERM or a stop condition stopped the step
                        (foundation/interrupt.py)

Activities turn these into chaoslib's ActivityFailed; the CLI turns them into one line
with the exit code of the kind (3, 4, 5).
"""

from __future__ import annotations


class GamedayError(Exception):
    """Base of everything gameday raises on purpose."""


class ConfigError(GamedayError):
    """The input is wrong; the message names the field and the fix."""


class LabError(GamedayError):
    """The lab is not in the state this step needs."""


class TargetError(GamedayError):
    """A system under test did not answer or refused a change."""
