"""``make demo``'s detection path on its real clips, and the check that judges its table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dupwatch.config import Settings
from ingest.events import AlertEvent
from tests.readme_blocks import UPDATE, read_block, write_block
from dupwatch.demo import DemoResult, DemoVideo, format_table, judge, prepare_demo_folder, run_demo, summary

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


@pytest.fixture(scope="module")
def demo_run(demo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run_demo(Settings(), demo_folder, tmp_path_factory.mktemp("demo-db") / "demo.db", only=ONLY)


def test_demo_finds_the_excerpt_and_the_inset_copy_with_right_segments(demo_run: DemoResult) -> None:
    result = demo_run
    table = format_table(result)
    rows = {(r.video, r.verdict, r.matched) for r in result.rows}
    assert rows >= {
        ("s2vs_example_video1", "no match", "-"),
        ("bigbuckbunny", "no match", "-"),
        ("pan_coffee", "no match", "-"),
        ("s2vs_example_video1__edit2", "copy", "s2vs_example_video1"),
        ("s2vs_example_video1__edit3", "copy", "s2vs_example_video1"),
    }, table
    # the only other row allowed: the picture-in-picture copy matching the excerpt copy (both show
    # seconds 6-10), as a copy or, one level lower, as an incident
    assert rows - {(v, "no match", "-") for v in ONLY[:3]} <= {
        ("s2vs_example_video1__edit2", "copy", "s2vs_example_video1"),
        ("s2vs_example_video1__edit3", "copy", "s2vs_example_video1"),
        ("s2vs_example_video1__edit3", "copy", "s2vs_example_video1__edit2"),
        ("s2vs_example_video1__edit3", "incident", "s2vs_example_video1__edit2"),
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


def _shape(value: object) -> object:
    """Keys and JSON types, not values: what a reader of the README example relies on."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return value
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def test_readme_alert_example_is_a_real_alert(demo_run: DemoResult) -> None:
    """The README's alert body is this run's alert for the inserted excerpt (regenerate: DUPWATCH_UPDATE_README=1)."""
    alert = next(a for a in demo_run.alerts
                 if a["video_id"] == "s2vs_example_video1__edit2" and a["matched_video_id"] == "s2vs_example_video1")
    AlertEvent.model_validate(alert)
    assert re.fullmatch(r"alr-[0-9a-f]{32}", alert["alert_id"])
    assert "engine" not in alert["evidence"].get("methods", {})
    long_strings = [v for v in _strings(alert["evidence"]) if len(v) > 80]
    assert not long_strings, f"diagnostics in the alert evidence: {long_strings}"
    assert set(alert["evidence"]["thresholds"]) == {"copy", "incident"}
    text = "```json\n" + json.dumps(alert, indent=2) + "\n```\n"
    if UPDATE:
        write_block("alert-example", text)
    block = read_block("alert-example")
    shown = json.loads(block.strip().removeprefix("```json").removesuffix("```"))
    assert _shape(shown) == _shape(alert), (
        "README.md's alert example no longer has the fields of a real alert; regenerate it with "
        "DUPWATCH_UPDATE_README=1 python -m pytest tests/test_demo.py -k readme")
    assert re.fullmatch(r"alr-[0-9a-f]{32}", shown["alert_id"])


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "holiday.mp4").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a demo folder"):
        prepare_demo_folder(tmp_path)
    assert (tmp_path / "holiday.mp4").read_bytes() == b"not ours"
