"""Well-known locations: the repository and the caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Cache for downloaded jars, tool binaries, decoded frames and features."""
    path = Path(os.environ.get("DUPWATCH_CACHE_DIR", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


FIXTURE_VIDEOS = REPO_ROOT / "tests" / "fixtures" / "videos"
"""Real sample clips kept in the repository (origins and licences in ``tests/fixtures/README.md``)."""
