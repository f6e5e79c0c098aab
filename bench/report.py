"""Output of ``dupwatch eval``: the text table, and the Markdown report with PNG plots.

:func:`format_table` reads only the JSON-ready dict of :meth:`scoring.methods.EvalResult.to_json`, so a
saved ``--json`` output can be re-printed. :func:`write_report` also needs the scored pairs (PR
curves per method, score histograms per truth level) and imports matplotlib (Agg) late.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoring.methods import EvalResult

__all__ = ["COLUMNS", "format_table", "markdown_table", "write_report"]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("retrieval_map", "mAP"),
    ("copy_uap", "µAP copy"),
    ("related_uap", "µAP c+i"),
    ("copy_vs_incident_ap", "AP c>i"),
    ("copy_uap_without_incidents", "µAP copy -inc"),
    ("segment_uap", "seg µAP"),
    ("segment_p", "seg P"),
    ("segment_r", "seg R"),
    ("segment_f", "seg F"),
)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _operating_points(m: dict[str, Any]) -> str:
    parts = []
    for level, pr in m.get("at_thresholds", {}).items():
        p = "n/a" if pr["precision"] is None else f"{pr['precision']:.2f}"
        parts.append(f"{level} ≥{pr['threshold']:.3g}: P {p} R {pr['recall']:.2f}")
    ceiling = m.get("copy_ceiling")
    if ceiling:
        parts.append(f"best on this set at P ≥{ceiling['target_precision']:g}: "
                     f"R {ceiling['recall']:.2f} (≥{ceiling['threshold']:.3g})")
    for key, a in (m.get("alerts") or {}).items():
        if isinstance(a, dict):
            p = "n/a" if a["precision"] is None else f"{a['precision']:.2f}"
            r = "n/a" if a["recall"] is None else f"{a['recall']:.2f}"
            parts.append(f"{key} alerts: P {p} R {r}")
    return "; ".join(parts) or "-"


def _rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, m in result["methods"].items():
        rows.append([name] + [_fmt(m.get(k)) for k, _ in COLUMNS] + [f"{m.get('prepare_s', 0) + m.get('score_s', 0):.0f}",
                                                                       _operating_points(m)])
    return rows


def _header() -> list[str]:
    return ["method"] + [h for _, h in COLUMNS] + ["time s", "P/R at thresholds"]


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width table of the metrics per method, with the set's size on top."""
    header = _header()
    rows = _rows(result)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = [
        f"{result['num_queries']} queries × {result['num_videos']} videos, "
        f"{result['copy_pairs']} copy and {result['incident_pairs']} incident pairs in {result['truth']}",
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    notes = []
    for name, m in result["methods"].items():
        if m.get("segment_rule"):
            notes.append(f"{name}: segments = {m['segment_rule']}")
        if m.get("segment_by_kind"):
            notes.append(f"{name}: segment P/R/F per kind: " + "; ".join(
                f"{k} {v['segment_p']:.3f}/{v['segment_r']:.3f}/{v['segment_f']:.3f} ({v['pairs']} pairs)"
                for k, v in m["segment_by_kind"].items()))
        if m.get("info", {}).get("note"):
            notes.append(f"{name}: {m['info']['note']}")
    return "\n".join(lines + notes + per_kind_lines(result))


def per_kind_lines(result: dict[str, Any]) -> list[str]:
    """One line per (method, edit kind) when the truth has a ``kind`` column: copy kinds give AP and
    recall at the copy threshold, incident kinds the copy-vs-kind AP and the false copy-alert rate."""
    lines: list[str] = []
    for name, m in result["methods"].items():
        kinds = m.get("per_kind") or {}
        if not kinds:
            continue
        t = next(iter(kinds.values())).get("threshold")
        lines.append(f"{name} per kind (threshold {'n/a' if t is None else f'{t:.3g}'}):")
        width = max(len(k) for k in kinds)
        for kind, e in kinds.items():
            if "pairs" in e:
                lines.append(f"  {kind.ljust(width)}  {e['pairs']:4d} copies    AP {_fmt(e['ap'])}  recall {_fmt(e['recall'])}")
                partners = e.get("by_partner") or {}
                if len(partners) > 1 and t is not None:
                    lines.append(f"  {' ' * width}  found against: " +
                                 ", ".join(f"{k} {v['found']}/{v['pairs']}" for k, v in partners.items()))
            if "incident_pairs" in e:
                lines.append(f"  {kind.ljust(width)}  {e['incident_pairs']:4d} incidents  AP copy>kind {_fmt(e['copy_vs_kind_ap'])}  "
                             f"copy-alert rate {_fmt(e['alert_rate'])}")
    return lines


def markdown_table(result: dict[str, Any]) -> str:
    header = _header()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(result)]
    return "\n".join(lines)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def segment_kind_table(data: dict[str, Any]) -> list[str]:
    """Markdown table: per truth kind (and all copies) each method's segment P/R/F given the pair and ranked."""
    methods = {n: m for n, m in data["methods"].items() if m.get("segment_localization")}
    if not methods:
        return []
    kinds = list(dict.fromkeys(k for m in methods.values() for k in m["segment_localization"]))

    def cell(v: dict[str, Any] | None) -> str:
        return "-" if not v else f"{v['segment_p']:.3f} / {v['segment_r']:.3f} / **{v['segment_f']:.3f}**"

    header = "| kind (pairs) | " + " | ".join(f"{n} given pair | {n} ranked" for n in methods) + " |"
    rows = [header, "|" + "---|" * (1 + 2 * len(methods))]
    for k in kinds:
        pairs = next((m["segment_localization"][k]["pairs"] for m in methods.values() if k in m["segment_localization"]), 0)
        cells = []
        for m in methods.values():
            ranked = {"segment_p": m["segment_p"], "segment_r": m["segment_r"], "segment_f": m["segment_f"]} if k == "all" \
                else (m.get("segment_by_kind") or {}).get(k)
            cells += [cell(m["segment_localization"].get(k)), cell(ranked)]
        rows.append(f"| {'all copies' if k == 'all' else k} ({pairs}) | " + " | ".join(cells) + " |")
    return rows


def write_report(result: "EvalResult", out_dir: Path | str) -> Path:
    """``report.md``, ``metrics.json``, ``pr_curves.png``, ``scores_<method>.png`` (histogram per truth level) and
    ``scores_<method>.csv`` (every scored pair, :mod:`evaluation.truth` format), ``segments_<method>.csv`` (every
    predicted segment); returns the report path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scoring.methods import pr_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    (out / "metrics.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    from evaluation.truth import ScoreRow, write_scores_csv

    from scoring.methods import write_segments_csv

    for run in result.runs:
        write_segments_csv(run, out / f"segments_{_slug(run.name)}.csv")
        write_scores_csv((ScoreRow(q, r, s, run.fine_scores.get((q, r)), None, run.copy_scores.get((q, r)))
                          for (q, r), s in sorted(run.scores.items())), out / f"scores_{_slug(run.name)}.csv")

    curves = {run.name: pr_curves(run, result.truth) for run in result.runs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, level in zip(axes, ("copy", "copy+incident")):
        for name, by_level in curves.items():
            if level in by_level:
                c = by_level[level]
                ax.step(c.curve.recalls, c.curve.precisions, where="post", label=f"{name} (µAP {c.ap:.3f})")
        ax.set(title=f"detection PR, positives: {level}", xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pr_curves.png", dpi=110)
    plt.close(fig)

    hist_files = []
    for run in result.runs:
        by_level: dict[str, list[float]] = {"copy": [], "incident": [], "unrelated": []}
        for (q, r), s in run.scores.items():
            by_level[result.truth.level_of(q, r)].append(s)
        fig, ax = plt.subplots(figsize=(6.5, 4))
        values = [v for vs in by_level.values() for v in vs]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        bins = [lo + (hi - lo + 1e-9) * i / 40 for i in range(41)]
        for level, color in (("unrelated", "tab:gray"), ("incident", "tab:orange"), ("copy", "tab:blue")):
            if by_level[level]:
                ax.hist(by_level[level], bins=bins, alpha=0.6, color=color, label=f"{level} ({len(by_level[level])})", density=True)
        for level, t in sorted(run.thresholds.items()):
            ax.axvline(t, ls="--", color="k", lw=1)
            ax.text(t, ax.get_ylim()[1] * 0.95, f" {level}", fontsize=8)
        if run.decision_threshold is not None and not run.thresholds:
            ax.axvline(run.decision_threshold, ls="--", color="k", lw=1)
        ax.set(title=f"{run.name}: pair scores per truth level", xlabel="score", ylabel="density")
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = f"scores_{_slug(run.name)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        hist_files.append((run.name, name))

    lines = [
        "# dupwatch eval report",
        "",
        f"- videos: `{data['videos']}` ({data['num_videos']} videos, {data['num_queries']} queries)",
        f"- truth: `{data['truth']}` ({data['copy_pairs']} copy pairs, {data['incident_pairs']} incident pairs; unlisted pairs are unrelated)",
        f"- every query scored against every other video ({sum(len(r.scores) for r in result.runs[:1])} pairs per method)",
        "",
        "## Metrics",
        "",
        markdown_table(data),
        *(["", "## Per edit kind", "", "```", *per_kind_lines(data), "```"] if per_kind_lines(data) else []),
        "",
        "mAP: retrieval, copy positives, per query. µAP copy: detection, copy vs incident+unrelated. "
        "µAP c+i: copy+incident vs unrelated. AP c>i: copy ranked above incident among truth pairs (issue #12). "
        "µAP copy -inc: copy µAP with incident pairs removed. seg: VCSL/VSC22 segment metrics (see rules below). "
        "time: prepare (decode, hashing, features; features shared by several methods are charged to the first) + scoring.",
        "",
        "## Methods",
        "",
    ]
    for name, m in data["methods"].items():
        lines.append(f"- **{name}**: " + "; ".join(f"{k}: {v}" for k, v in m.get("info", {}).items()))
        lines.append(f"  - segments: {m.get('segment_rule')}; prepare {m.get('prepare_s')} s, scoring {m.get('score_s')} s")
        for kind, v in (m.get("segment_by_kind") or {}).items():
            lines.append(f"  - segments of kind {kind} ({v['pairs']} pairs): P {v['segment_p']:.3f} R {v['segment_r']:.3f} "
                         f"F {v['segment_f']:.3f}")
    table = segment_kind_table(data)
    if table:
        lines += ["", "## Segments per edit kind", "",
                  "Segment P / R / F (VCSL overall metric). *given pair*: every segment the method predicted on the "
                  "truth copy pairs (localization alone, VCSL's protocol); *ranked*: the segments of each query's top-k "
                  "references that clear the method's copy threshold (what a moderator would see).", "", *table]
    lines += ["", "## Plots", "", "![PR curves](pr_curves.png)", ""]
    lines += [f"![{n} scores]({f})" for n, f in hist_files]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
