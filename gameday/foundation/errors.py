"""One exception tree, so that callers catch one base and the edges translate it.

    GamedayError
    ├── ConfigError     bad experiment configuration, descriptor or argument: fix the input
    ├── LabError        the lab (or a region) is not in the state the step needs
    │   └── NotRoot / MissingProgram
    └── TargetError     a target system did not answer or refused the change

Activities turn these into chaoslib's ActivityFailed; the CLI turns them into one line.
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
