"""Refuse file access outside the clone during tests.

The test set-up installs :func:`install` once per session (``tests/conftest.py``), so a test,
fixture or library call that opens or lists a path in the clone's surroundings fails with
:class:`OutsideRepositoryError` instead of quietly depending on files a fresh clone lacks.

Refused: any path in the folder that holds the clone but outside the clone itself (``../shared``,
sibling checkouts), and ``shared/`` beside any folder above the clone. Allowed there: hidden
entries (``~/.cache``, ``~/.m2`` when the clone sits in a home folder) and the temporary folder,
the Python installation and the configured cache where they lie inside that folder (a clone
directly in ``/tmp`` keeps pytest's temporary folders). Everything else on the machine (``/tmp``,
the virtual environment, system libraries) is untouched.

Python's audit events cover ``open`` (every file open, also by ``io``, ``pathlib`` and C
extensions that go through Python) and ``os.listdir``/``os.scandir``; child processes are not
covered.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


class OutsideRepositoryError(PermissionError):
    """A test reached a path outside the clone."""


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.abspath(path))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Guard:
    """Decides whether a path lies outside the clone (see the module docstring)."""

    def __init__(self, repo: Path, allowed: list[str | os.PathLike[str]] | None = None, *, defaults: bool = True) -> None:
        self.repo = _real(repo)
        self.parent = os.path.dirname(self.repo)
        self.denied = [os.path.join(str(a), "shared") for a in Path(self.repo).parents]
        extra = [tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix] if defaults else []
        self.allowed = [_real(p) for p in [*extra, *(allowed or [])] if p]

    def refuses(self, path: str | os.PathLike[str]) -> bool:
        real = _real(path)
        if _within(real, self.repo):
            return False
        if any(_within(real, d) for d in self.denied):
            return True
        if not _within(real, self.parent) or real == self.parent:
            return False
        if os.path.relpath(real, self.parent).startswith("."):
            return False  # hidden entries beside the clone: tool caches and settings
        # An allowed place counts only where it lies inside the parent (``/tmp`` when the clone sits
        # directly in it); one that holds the parent (``/tmp`` for ``/tmp/x/clone``) allows no sibling.
        return not any(_within(real, a) and _within(a, self.parent) for a in self.allowed)

    @property
    def siblings_refused(self) -> bool:
        """False when the parent itself is an allowed place (a clone directly in ``/tmp``): then only ``shared/`` is refused."""
        return self.parent not in self.allowed

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if event not in EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return  # file descriptors, None (os.listdir() of the working folder)
        if self.refuses(path):
            raise OutsideRepositoryError(f"tests must not read outside the repository: {path} (resolves to {_real(path)})")


def install(repo: Path, allowed: list[str | os.PathLike[str]] | None = None) -> Guard:
    """Install the guard as an audit hook for the rest of the process (audit hooks cannot be removed)."""
    guard = Guard(repo, allowed)
    sys.addaudithook(guard.hook)
    return guard
