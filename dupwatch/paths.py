"""Well-known locations: the repository, the shared folder beside it, caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The ``shared/`` folder beside the checkout (design docs, parity fixtures, sample videos)."""
    env = os.environ.get("DUPWATCH_SHARED_DIR")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT.parent / "shared", REPO_ROOT / "shared"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    """Cache for downloaded jars, tool binaries, decoded frames and features."""
    path = Path(os.environ.get("DUPWATCH_CACHE_DIR", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path
