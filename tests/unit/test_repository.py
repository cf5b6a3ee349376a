"""The repository stands on its own: no reference to a document or path outside it, and
the documents it cites exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    files = []
    for name in out:
        path = ROOT / name
        if path.is_file() and not path.is_symlink() and path.suffix not in (".svg", ".sqlite"):
            try:
                path.read_text()
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def test_nothing_refers_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|DESIGN section|DESIGN\.md|STYLE rule|STYLE\.md")
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in tracked_text_files() if p.name != "test_repository.py"
            for n, line in enumerate(p.read_text().splitlines(), 1) if outside.search(line)]
    assert not hits, "\n".join(hits)


def test_cited_documents_exist() -> None:
    cited = re.compile(r"\b(docs/[\w.-]+\.md|CONTRIBUTING\.md)")
    missing = {m for p in tracked_text_files() for m in cited.findall(p.read_text())
               if not (ROOT / m).is_file()}
    assert not missing, missing
