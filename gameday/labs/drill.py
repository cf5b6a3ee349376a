"""What one drill leaves for the next: which region was promoted, when, and by which game
day run. Failback reads it to know there is something to fail back from, and to tell
split-brain writes (acknowledged by the old primary after the promotion) from writes that
were merely not replicated before the fault."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "drill.json"


def path(lab_path: str | os.PathLike[str]) -> Path:
    return Path(lab_path).absolute().parent / FILE


def read(lab_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path(lab_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write(lab_path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    p = path(lab_path)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(p)


def clear(lab_path: str | os.PathLike[str]) -> None:
    p = path(lab_path)
    if p.exists():
        p.unlink()
