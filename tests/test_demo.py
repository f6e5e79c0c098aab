"""``make demo``'s detection path on its real clips, and the check that judges its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from dupwatch.config import Settings
from dupwatch.demo import DemoVideo, format_table, judge, prepare_demo_folder, run_demo, summary

ONLY = ("s2vs_example_video1", "bigbuckbunny", "pan_coffee", "s2vs_example_video1__edit2", "s2vs_example_video1__edit3")


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "videos"
    prepare_demo_folder(folder)
    return folder


def test_demo_folder_is_made_from_repository_and_package_clips_only(demo_folder: Path) -> None:
    videos = prepare_demo_folder(demo_folder)  # second call: kept as it is
    names = {v.video_id for v in videos}
    assert {"s2vs_example_video1", "bigbuckbunny", "pan_astronaut", "pan_coffee"} <= names
    assert not any(n.startswith(("bikes", "carphone")) for n in names)  # reserved for independent evaluation
    copies = [v for v in videos if v.is_copy]
    assert len(copies) == 4 and all((demo_folder / v.file).is_file() for v in videos)
    excerpt = next(v for v in copies if "inserted" in v.description)
    assert excerpt.start > 0 and excerpt.end - excerpt.start == pytest.approx(4.0) and excerpt.source_start == 6.0


def test_demo_finds_the_excerpt_and_the_inset_copy_with_right_segments(demo_folder: Path, tmp_path: Path) -> None:
    result = run_demo(Settings(), demo_folder, tmp_path / "demo.db", only=ONLY)
    table = format_table(result)
    rows = {(r.video, r.verdict, r.matched) for r in result.rows}
    assert rows == {
        ("s2vs_example_video1", "no match", "-"),
        ("bigbuckbunny", "no match", "-"),
        ("pan_coffee", "no match", "-"),
        ("s2vs_example_video1__edit2", "copy", "s2vs_example_video1"),
        ("s2vs_example_video1__edit3", "copy", "s2vs_example_video1"),
    }, table
    assert all(r.correct for r in result.rows), table
    assert result.ok and result.found == ["s2vs_example_video1__edit2", "s2vs_example_video1__edit3"]
    assert all(r.p_copy is not None and r.p_copy >= 0.5 for r in result.rows if r.verdict == "copy")
    assert summary(result).startswith("2 of 2 edited copies found")
    assert "s2vs_example_video1__edit2  copy" in table


VIDEOS = [
    DemoVideo("a.mp4", "a", "real", 0.0, 14.0),
    DemoVideo("a__edit0.mp4", "a", "excerpt 6-10 s at 2-6 s", 2.0, 6.0, 6.0),
    DemoVideo("b.mp4", "b", "real", 0.0, 5.0),
    DemoVideo("b__edit1.mp4", "b", "mirror", 0.0, 5.0),
]


def _alert(query: str, ref: str, q: tuple[float, float], r: tuple[float, float], level: str = "copy") -> dict:
    seg = {"query_start": q[0], "query_end": q[1], "ref_start": r[0], "ref_end": r[1]}
    return {"type": "alert", "video_id": query, "matched_video_id": ref, "level": level, "segments": [seg],
            "evidence": {"copy_score": 0.9}}


def test_judge_accepts_right_alerts() -> None:
    result = judge(VIDEOS, [_alert("a__edit0", "a", (2, 6), (6, 10)), _alert("b__edit1", "b", (0, 5), (0, 5))])
    assert result.ok and result.found == ["a__edit0", "b__edit1"]


def test_judge_flags_a_wrong_segment_a_false_alert_and_a_missed_copy() -> None:
    result = judge(VIDEOS, [_alert("a__edit0", "a", (2, 6), (0, 3)), _alert("b__edit1", "a", (0, 5), (0, 5))])
    assert not result.ok
    assert result.missed == ["a__edit0", "b__edit1"]
    assert [(r.video, r.note) for r in result.false_alerts] == [("a__edit0", "wrong segment"), ("b__edit1", "different source")]
    assert "WRONG: wrong segment" in format_table(result)
    filler_only = judge(VIDEOS, [_alert("a__edit0", "a", (6.5, 9), (6, 10))])  # the query side is the other footage
    assert not filler_only.ok and filler_only.false_alerts
