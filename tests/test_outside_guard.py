"""The session-wide guard refuses paths beside the clone, so no test can depend on ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dupwatch.paths import REPO_ROOT
from tests.conftest import OUTSIDE_GUARD
from tests.outside_guard import Guard, OutsideRepositoryError


def test_guard_is_installed_for_the_session() -> None:
    shared = REPO_ROOT.parent / "shared"
    with pytest.raises(OutsideRepositoryError, match="outside the repository"):
        open(shared / "videos" / "s2vs_example_video1.mp4", "rb")  # noqa: SIM115
    with pytest.raises(OutsideRepositoryError):
        (shared / "fixtures" / "parity" / "README.md").read_text()
    with pytest.raises(OutsideRepositoryError):
        list(os.scandir(shared))
    if OUTSIDE_GUARD.siblings_refused:
        with pytest.raises(OutsideRepositoryError):
            os.listdir(REPO_ROOT.parent / "some-sibling-checkout")
    with pytest.raises(OutsideRepositoryError):
        open(os.fsencode(REPO_ROOT / ".." / "shared" / "x"), "rb")  # noqa: SIM115  relative parts and bytes


def test_shared_above_the_parent_is_refused_too() -> None:
    """A worktree one level deeper (``/work/wt/h1``) must not reach ``/work/shared`` either."""
    ancestors = list(REPO_ROOT.parents)
    if len(ancestors) < 2:
        pytest.skip("the clone sits directly under the root folder")
    assert OUTSIDE_GUARD.refuses(ancestors[1] / "shared" / "videos" / "clip.mp4")


def test_guard_leaves_the_clone_and_the_machine_alone(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("ok")
    assert (tmp_path / "ok.txt").read_text() == "ok"
    assert (REPO_ROOT / "README.md").read_text().startswith("# dupwatch")
    assert os.listdir(REPO_ROOT / "tests")
    assert not OUTSIDE_GUARD.refuses("/usr/lib")
    assert not OUTSIDE_GUARD.refuses(REPO_ROOT.parent / ".cache" / "pip")


def test_guard_rules_on_a_made_up_layout(tmp_path: Path) -> None:
    repo = tmp_path / "work" / "repo"
    (repo / "tests").mkdir(parents=True)
    guard = Guard(repo, allowed=[tmp_path / "work" / "venv"], defaults=False)
    assert guard.refuses(tmp_path / "work" / "shared" / "videos" / "a.mp4")
    assert guard.refuses(tmp_path / "work" / "other-checkout" / "x.py")
    assert guard.refuses(repo / ".." / "shared")
    assert guard.refuses(tmp_path / "shared" / "a")  # shared/ beside a folder further up
    assert not guard.refuses(repo / "tests" / "fixtures" / "x")
    assert not guard.refuses(tmp_path / "work" / "venv" / "lib")
    assert not guard.refuses(tmp_path / "work" / ".m2" / "repository")
    assert not guard.refuses(tmp_path / "elsewhere" / "x")
    assert guard.siblings_refused


def test_an_allowed_place_above_the_parent_allows_no_sibling(tmp_path: Path) -> None:
    """A clone at ``/tmp/a/clone`` with ``/tmp`` allowed still may not read ``/tmp/a/other``."""
    repo = tmp_path / "a" / "clone"
    repo.mkdir(parents=True)
    guard = Guard(repo, allowed=[tmp_path], defaults=False)
    assert guard.refuses(tmp_path / "a" / "other" / "x") and guard.siblings_refused
    assert not guard.refuses(tmp_path / "b" / "x")
    lenient = Guard(repo, allowed=[tmp_path / "a"], defaults=False)  # the clone sits directly in the temporary folder
    assert not lenient.refuses(tmp_path / "a" / "pytest-of-me" / "x") and not lenient.siblings_refused
    assert lenient.refuses(tmp_path / "a" / "shared" / "x")
