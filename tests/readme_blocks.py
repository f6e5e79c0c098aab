"""Blocks of README.md that tests generate from the code: read, compare, rewrite.

A block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``. Tests compare it with
what the code produces; ``DUPWATCH_UPDATE_README=1`` makes them rewrite it instead (then review
the diff and commit it).
"""

from __future__ import annotations

import os
import re

from dupwatch.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
UPDATE = os.environ.get("DUPWATCH_UPDATE_README") == "1"


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {re.escape(name)}:start[^>]*-->\n)(.*?)(<!-- {re.escape(name)}:end -->)", re.S)


def read_block(name: str) -> str:
    found = _pattern(name).search(README.read_text())
    assert found, f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block"
    return found.group(2)


def write_block(name: str, body: str) -> None:
    text = README.read_text()
    new, count = _pattern(name).subn(lambda m: m.group(1) + body + m.group(3), text)
    assert count == 1, f"README.md needs exactly one {name} block"
    README.write_text(new)
