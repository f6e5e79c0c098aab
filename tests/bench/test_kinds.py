"""Edit kinds: the upload transformations, the truth CSV's ``kind`` column, and ``dupwatch eval``'s
metrics per kind (exact on hand-made scores, and end to end on a tiny generated benchmark)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation import transforms as T
from evaluation.builder import BenchmarkSpec, Derivation, build_benchmark, label_pair, relabel_benchmark
from scoring.methods import MethodRun, per_kind_metrics
from evaluation.sources import ken_burns, real_photos
from evaluation.truth import TruthRow, read_truth_csv, write_truth_csv
from dupwatch.cli import app


@pytest.fixture(scope="module")
def clip():  # type: ignore[no-untyped-def]
    return ken_burns(real_photos()["chelsea"], 3.0, 4.0, np.random.default_rng(0), size=(320, 180))


def test_kind_column_round_trip_and_optional(tmp_path: Path) -> None:
    rows = [TruthRow("a", "b", "copy", 0.0, 1.0, 0.0, 1.0, kind="letterbox"), TruthRow("a", "c", "incident", kind="another_moment"),
            TruthRow("d", "b", "copy", 0.0, 2.0, 1.0, 3.0)]
    write_truth_csv(rows, tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert header.endswith(",kind")
    truth = read_truth_csv(tmp_path / "t.csv")
    assert truth.rows == tuple(rows)
    assert truth.kinds() == {("a", "b"): "letterbox", ("a", "c"): "another_moment"}
    assert truth.kinds("copy") == {("a", "b"): "letterbox"}
    plain = read_truth_csv(io.StringIO("query,reference,level\na,b,copy\n"))
    assert plain.rows[0].kind is None and plain.kinds() == {}
    buf = io.StringIO()
    write_truth_csv(plain, buf)
    assert buf.getvalue().splitlines()[0] == "query,reference,level"  # no kind column when no row has one


@pytest.mark.parametrize("name", sorted(T.UPLOAD_EDITS))
def test_upload_edits_change_the_picture(clip, name: str) -> None:  # type: ignore[no-untyped-def]
    edit = T.UPLOAD_EDITS[name](clip, np.random.default_rng(3))
    assert len(edit.clip.frames) == len(clip.frames)
    first = edit.clip.frames[0]
    assert first.dtype == np.uint8 and first.ndim == 3
    assert first.shape != clip.frames[0].shape or np.abs(first.astype(int) - clip.frames[0].astype(int)).mean() > 2


def test_letterbox_and_vertical_shapes(clip) -> None:  # type: ignore[no-untyped-def]
    box = T.letterbox_resize(clip, np.random.default_rng(0))
    h, w = box.clip.frames[0].shape[:2]
    assert box.name == "letterbox" and w / h < 16 / 9 - 0.1  # a 16:9 clip in a narrower frame: bars above and below
    assert box.clip.frames[0][:4].std() < 1.0  # the top rows are a bar
    modes = set()
    for seed in range(12):
        v = T.vertical_reframe(clip, np.random.default_rng(seed))
        h, w = v.clip.frames[0].shape[:2]
        assert abs(w / h - 9 / 16) < 0.01
        modes.add(v.params["mode"])
    assert modes == {"centre", "offcentre", "blurfill"}


@pytest.mark.parametrize("upload", ["vertical", "none"])
def test_picture_in_picture_keeps_the_copy_aspect(clip, upload: str) -> None:  # type: ignore[no-untyped-def]
    """A 9:16 copy shown inside a 16:9 host is a tall narrow inset, not the copy stretched to the
    host's proportions; a 16:9 copy keeps its width draw."""
    copy = T.vertical_reframe(clip, np.random.default_rng(0)).clip if upload == "vertical" else clip
    for seed in range(6):
        edit = T.picture_in_picture(copy, clip, np.random.default_rng(seed))
        p = edit.params
        h, w = copy.frames[0].shape[:2]
        assert abs(float(p["height"]) / float(p["width"]) - h / w) < 0.05 * h / w
        assert float(p["height"]) <= 0.9 * clip.size[1] + 2 and float(p["width"]) <= 0.65 * clip.size[0] + 2
        if upload == "none":
            assert abs(float(p["width"]) - float(p["scale"]) * clip.size[0]) <= 2
        x, y = int(p["x"]), int(p["y"])
        inset = edit.clip.frames[0][y: y + int(p["height"]), x: x + int(p["width"])]
        assert inset.shape[:2] == (int(p["height"]), int(p["width"]))


def test_kind_of_and_labels() -> None:
    assert T.kind_of(("vertical_blurfill", "speed2")) == "vertical_reframe"
    assert T.kind_of(("letterbox", "pip")) == "picture_in_picture"
    assert T.kind_of(("pillarbox",)) == "letterbox"
    assert T.kind_of(("heavy", "insert")) == "embedded_excerpt"
    assert T.kind_of(("sepia",)) == "grey_sepia" and T.kind_of(("speed0.5",)) == "speed_change"
    assert T.kind_of(("cut",)) == "excerpt" and T.kind_of(("blur",)) == "spatial"
    ref = Derivation("s__ref", "s", (0.0, 20.0), is_query=False)
    copy = Derivation("s__copy0", "s", (2.0, 8.0), edits=("vertical_centre",))
    cut = Derivation("s__cutB", "s", (12.0, 16.0), edits=("cut",))
    crop = Derivation("s__camera2", "s", (2.0, 8.0), edits=("viewpoint",))
    other_camera = Derivation("s__cam1", "s", (2.0, 8.0), camera=1)
    assert label_pair(copy, ref).kind == "vertical_reframe"  # type: ignore[union-attr]
    assert label_pair(cut, copy).kind == "another_moment"  # type: ignore[union-attr]
    # a sheared corner crop shows the same camera's frames: a copy; only another camera is an incident
    row = label_pair(crop, copy)
    assert row is not None and (row.level, row.kind) == ("copy", "corner_crop")
    row = label_pair(other_camera, copy)
    assert row is not None and (row.level, row.kind) == ("incident", "another_camera")


def test_a_benchmark_that_recorded_the_corner_crop_as_a_second_camera_is_relabelled(tmp_path: Path) -> None:
    derivations = [Derivation("s__ref", "s", (0.0, 20.0), is_query=False),
                   Derivation("s__camera2", "s", (2.0, 8.0), camera=1, edits=("viewpoint",)),
                   Derivation("s__cam1", "s", (2.0, 8.0), camera=1)]
    (tmp_path / "benchmark.json").write_text(json.dumps({"spec": {}, "derivations": [asdict(d) for d in derivations]}))
    rows = {(r.query, r.reference): (r.level, r.kind) for r in relabel_benchmark(tmp_path)}
    assert rows[("s__camera2", "s__ref")] == ("copy", "corner_crop")
    assert rows[("s__cam1", "s__ref")] == ("incident", "another_camera")
    assert rows[("s__cam1", "s__camera2")] == ("incident", "another_camera")
    assert (tmp_path / "truth.csv").is_file()


def test_a_speed_change_is_a_kind_of_its_own_behind_any_spatial_edit() -> None:
    assert T.pair_kind(("letterbox", "speed0.5"), relative_speed=0.5) == "letterbox+speed_change"
    assert T.pair_kind(("speed0.5",), relative_speed=0.5) == "speed_change"
    assert T.pair_kind(("letterbox",)) == "letterbox"
    ref = Derivation("s__ref", "s", (0.0, 20.0), is_query=False)
    slow = Derivation("s__copy0", "s", (2.0, 8.0), speed=0.5, edits=("pillarbox", "speed0.5"))
    slow_too = Derivation("s__copy1", "s", (3.0, 9.0), speed=0.5, edits=("heavy", "speed0.5"))
    assert label_pair(slow, ref).kind == "letterbox+speed_change"  # type: ignore[union-attr]
    assert label_pair(ref, slow).kind == "excerpt+speed_change"  # type: ignore[union-attr]
    assert label_pair(slow_too, slow).kind == "heavy_combination"  # type: ignore[union-attr]  # same speed: none between them


def test_a_pair_with_several_kinds_counts_under_each(tmp_path: Path) -> None:
    rows = [TruthRow("a", "r", "copy", 0.0, 1.0, 0.0, 2.0, kind="letterbox+speed_change"),
            TruthRow("b", "r", "copy", 0.0, 1.0, 0.0, 1.0, kind="letterbox")]
    write_truth_csv(rows, tmp_path / "t.csv")
    truth = read_truth_csv(tmp_path / "t.csv")
    assert truth.kinds() == {("a", "r"): "letterbox", ("b", "r"): "letterbox"}
    assert truth.kind_sets() == {("a", "r"): ("letterbox", "speed_change"), ("b", "r"): ("letterbox",)}
    scores = {("a", "r"): 0.9, ("b", "r"): 0.3, ("x", "r"): 0.5}
    out = per_kind_metrics(_run(scores, 0.6), truth.kind_sets(), {("a", "r"), ("b", "r")}, set())
    assert out["letterbox"]["pairs"] == 2 and out["letterbox"]["recall"] == pytest.approx(0.5)
    assert out["speed_change"]["pairs"] == 1 and out["speed_change"]["recall"] == 1.0 and out["speed_change"]["ap"] == 1.0


def _run(scores: dict[tuple[str, str], float], threshold: float | None) -> MethodRun:
    return MethodRun("m", {}, scores, {}, threshold, {}, 0.0, 0.0)


def test_per_kind_metrics_exact() -> None:
    scores = {("q1", "r"): 0.9, ("q2", "r"): 0.4, ("q3", "r"): 0.8, ("m1", "r"): 0.85, ("m2", "r"): 0.1, ("x", "r"): 0.5}
    kinds = {("q1", "r"): "letterbox", ("q2", "r"): "letterbox", ("q3", "r"): "pip", ("m1", "r"): "another_moment",
             ("m2", "r"): "another_moment"}
    copies = {("q1", "r"), ("q2", "r"), ("q3", "r")}
    moments = {("m1", "r"), ("m2", "r")}
    out = per_kind_metrics(_run(scores, 0.6), kinds, copies, moments)
    # letterbox: ranking of q1 .9, m1 .85, x .5, q2 .4, m2 .1 (q3 left out) → AP = (1/1 + 2/4) / 2
    assert out["letterbox"]["ap"] == pytest.approx(0.75) and out["letterbox"]["recall"] == pytest.approx(0.5)
    assert out["pip"]["ap"] == pytest.approx(0.5) and out["pip"]["recall"] == 1.0  # q3 .8 below m1 .85
    m = out["another_moment"]
    assert m["level"] == "incident" and m["incident_pairs"] == 2 and m["alert_rate"] == pytest.approx(0.5)
    # copies .9 .8 .4 vs moments .85 .1 → ranks: q1, m1, q3, q2, m2 → AP = (1 + 2/3 + 3/4) / 3
    assert m["copy_vs_kind_ap"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert per_kind_metrics(_run(scores, None), kinds, copies, moments)["pip"]["recall"] is None


def test_per_kind_recall_is_split_by_what_each_copy_was_compared_with() -> None:
    """A copy kind's ``by_partner``: the reverse pair's main kind, or ``reference_only`` when the
    reference is no query; the report prints it under the kind's line."""
    from bench.report import per_kind_lines
    from scoring.methods import REFERENCE_ONLY

    kinds = {("a", "ref"): ("picture_in_picture",), ("b", "ref"): ("heavy_combination", "speed_change"),
             ("a", "b"): ("picture_in_picture", "speed_change"), ("b", "a"): ("heavy_combination", "speed_change"),
             ("c", "ref"): ("picture_in_picture",), ("m", "ref"): ("another_moment",)}
    copies = {p for p in kinds if "m" not in p}
    scores = {("a", "ref"): 0.9, ("b", "ref"): 0.7, ("a", "b"): 0.3, ("b", "a"): 0.65, ("c", "ref"): 0.5, ("m", "ref"): 0.1}
    out = per_kind_metrics(_run(scores, 0.6), kinds, copies, {("m", "ref")})
    assert out["picture_in_picture"]["by_partner"] == {
        "heavy_combination": {"pairs": 1, "found": 0, "recall": 0.0},
        REFERENCE_ONLY: {"pairs": 2, "found": 1, "recall": 0.5}}
    assert out["heavy_combination"]["by_partner"] == {
        "picture_in_picture": {"pairs": 1, "found": 1, "recall": 1.0}, REFERENCE_ONLY: {"pairs": 1, "found": 1, "recall": 1.0}}
    assert out["speed_change"]["by_partner"]["picture_in_picture"]["pairs"] == 1  # (b, a): a's main kind
    assert "by_partner" not in out["another_moment"]
    lines = per_kind_lines({"methods": {"m": {"per_kind": out}}})
    assert any("found against: heavy_combination 0/1, reference_only 1/2" in line for line in lines)
    blind = per_kind_metrics(_run(scores, None), kinds, copies, {("m", "ref")})
    assert blind["picture_in_picture"]["by_partner"][REFERENCE_ONLY] == {"pairs": 2, "found": None, "recall": None}
    assert not any("found against" in line for line in per_kind_lines({"methods": {"m": {"per_kind": blind}}}))


def test_eval_reports_per_kind_on_an_upload_benchmark(tmp_path: Path) -> None:
    spec = BenchmarkSpec(seed=5, copies_per_source=6, footage_photos=1, footage_seconds=14.0, distractors=1,
                         include_real_videos=False, fps=4.0, max_side=160, upload_edits=True)
    bench = build_benchmark(tmp_path / "b", spec, progress=False)
    truth = read_truth_csv(bench.truth_path)
    kinds = set(truth.kinds().values())
    assert "another_moment" in kinds and kinds & {"letterbox", "vertical_reframe", "heavy_combination", "grey_sepia", "logo"}
    meta = json.loads((bench.root / "benchmark.json").read_text())
    assert meta["spec"]["upload_edits"] is True
    built = bench.truth_path.read_text()
    bench.truth_path.unlink()
    relabelled = CliRunner().invoke(app, ["bench", "relabel", "--bench", str(bench.root)])
    assert relabelled.exit_code == 0, relabelled.output
    assert bench.truth_path.read_text() == built  # the labels follow from benchmark.json alone
    res = CliRunner().invoke(app, ["eval", "--bench", str(bench.root), "--json", "--methods", "vpdq", "--fps", "1"])
    assert res.exit_code == 0, res.output
    per_kind = json.loads(res.stdout)["methods"]["vpdq"]["per_kind"]
    assert set(per_kind) == kinds
    for kind, e in per_kind.items():
        assert e["threshold"] == pytest.approx(0.8)
        if "pairs" in e:
            assert 0 <= e["ap"] <= 1 and 0 <= e["recall"] <= 1
            assert sum(v["pairs"] for v in e["by_partner"].values()) == e["pairs"]
            assert sum(v["found"] for v in e["by_partner"].values()) == round(e["recall"] * e["pairs"])
    table = CliRunner().invoke(app, ["eval", "--bench", str(bench.root), "--methods", "vpdq", "--fps", "1"])
    assert table.exit_code == 0 and "vpdq per kind" in table.stdout and "another_moment" in table.stdout


def test_moment_cuts_do_not_overlap_and_two_keep_their_windows() -> None:
    """More "another moment" cuts (train benchmarks) are 4 s, disjoint and one per stretch; two cuts draw
    the same windows as they always did (one in each half), so calibrate and check stay as built."""
    from evaluation.builder import _moment_windows, truth_rows

    for length in (12.0, 18.5, 24.0, 30.0):
        for cuts in (3, 4, 5):
            windows = _moment_windows(length, cuts, np.random.default_rng(int(length) + cuts))
            assert 2 <= len(windows) <= min(cuts, int(length // 6))
            spans = sorted(w for _, w in windows)
            assert all(b - a == pytest.approx(4.0) and 0 <= a and b <= length for a, b in spans)
            assert all(nxt[0] > prev[1] for prev, nxt in zip(spans, spans[1:]))
    assert _moment_windows(30.0, 4, np.random.default_rng(0))[3][0] == "cutD"
    assert _moment_windows(11.0, 4, np.random.default_rng(0)) == [] and _moment_windows(11.9, 2, np.random.default_rng(0)) == []
    rng = np.random.default_rng(3)
    two = _moment_windows(20.0, 2, rng)
    rng = np.random.default_rng(3)
    first, second = round(float(rng.uniform(0, 5.0)), 2), round(float(rng.uniform(10.0, 16.0)), 2)
    assert two == [("cutA", (first, round(first + 4.0, 2))), ("cutB", (second, round(second + 4.0, 2)))]
    cuts = [Derivation(f"s__{tag}", "s", window, edits=("cut",)) for tag, window in _moment_windows(30.0, 4, np.random.default_rng(5))]
    rows = truth_rows(cuts, 1.0)
    assert len(rows) == 12 and {r.kind for r in rows} == {"another_moment"}  # each ordered pair of the 4 cuts


def test_upload_spatial_edits_join_the_upload_pool(tmp_path: Path) -> None:
    """``upload_spatial`` adds classic edits to the upload pool: with every other edit crowded out by
    chance they show up as copies' edits (kind ``spatial``); a name outside SPATIAL is refused."""
    from evaluation.builder import _derive
    from evaluation.video_io import Clip

    rng = np.random.default_rng(0)
    frames = [np.full((90, 160, 3), i * 9, np.uint8) for i in range(24)]
    frames = [f + rng.integers(0, 40, f.shape, dtype=np.uint8) for f in frames]
    clip = Clip(frames, 4.0)
    seen = set()
    for seed in range(40):
        _, d = _derive("q", "s", clip, (0.0, 6.0), None, np.random.default_rng(seed), upload_edits=True,
                       upload_spatial=("crop", "flip"))
        seen.update(e for e in d.edits if e in ("crop", "flip"))
        assert len([e for e in d.edits if e in T.SPATIAL or e in ("letterbox", "pillarbox", "heavy")]) <= 1
    assert seen == {"crop", "flip"}
    assert T.kind_of(["flip"]) == "spatial" and T.kind_of(["crop"]) == "spatial"
    with pytest.raises(ValueError, match="upload spatial"):
        build_benchmark(tmp_path / "x", BenchmarkSpec(upload_edits=True, upload_spatial=("warp",)), progress=False)
