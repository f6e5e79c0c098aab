"""``dupwatch calibrate`` and ``dupwatch alerts verify|sign``.

Only typer is imported at module level; numpy/matplotlib/requests load inside the commands.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dupwatch import cli_lists

alerts_app = typer.Typer(help="Webhook alert helpers (Standard Webhooks signatures).", no_args_is_help=True)
detect_app = typer.Typer(help="Inspect the detection of one pair of videos.", no_args_is_help=True)
background_app = typer.Typer(help="The background set of similarity normalization (a Milvus collection).", no_args_is_help=True)

EXIT_INVALID = 1
EXIT_USAGE = 2


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(background_app, name="background")
    app.add_typer(detect_app, name="detect")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def calibrate_command(
    truth: Annotated[list[Path], typer.Option("--truth", help="Ground-truth CSV: query,reference,level[,segments]. Repeat it, with one --scores each in the same order, to fit on several labelled sets together.")],
    scores: Annotated[list[Path], typer.Option("--scores", help="Scores CSV: query,reference,score[,fine_score,normalized_score]; one per --truth.")],
    plot: Annotated[Path, typer.Option("--plot", help="Write the PNG (score distributions, PR curves) here.")],
    target_precision: Annotated[float, typer.Option("--target-precision", help="Target precision of the copy level.")] = 0.95,
    incident_target_precision: Annotated[float, typer.Option("--incident-target-precision", help="Target precision of the incident level.")] = 0.90,
    holdout: Annotated[Optional[Path], typer.Option("--holdout", help="Scores CSV of a disjoint evaluation set.")] = None,
    holdout_truth: Annotated[Optional[Path], typer.Option("--holdout-truth", help="Ground truth of the holdout (default: --truth, when there is one).")] = None,
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="Model bundle folder: write calibration.json there.")] = None,
    score_field: Annotated[str, typer.Option("--score-field", help="auto | score | fine_score | normalized_score.")] = "auto",
    min_support: Annotated[int, typer.Option("--min-support", help="Pairs needed at or above a threshold.")] = 20,
    min_positives: Annotated[int, typer.Option("--min-positives", help="Positives needed per level.")] = 10,
    confidence: Annotated[Optional[float], typer.Option("--confidence", help="Require the Wilson lower bound of precision (at this confidence, e.g. 0.9) to reach the target.")] = None,
    levels: Annotated[str, typer.Option("--levels", help="Comma-separated levels to fit.")] = "copy,incident",
    level_field: Annotated[Optional[list[str]], typer.Option("--level-field", help="LEVEL=FIELD: fit LEVEL on another score column (copy_score, fine_score, ...). Default: copy=copy_score,incident=fine_score when the scores have a copy_score column.")] = None,
    groups: Annotated[Optional[list[Path]], typer.Option("--groups", help="Also report each level's precision bound with whole groups of videos resampled (sources, uploaders): a CSV video,group or a benchmark folder (its videos grouped by source); repeat it for several sets.")] = None,
    group_draws: Annotated[int, typer.Option("--group-draws", help="Bootstrap draws of --groups.")] = 1000,
) -> None:
    """Fit per-level alert thresholds on labelled scores, report them, plot them, store them."""
    from evaluation.truth import TruthFormatError, read_scores_csv, read_truth_csv
    from detect.calibration import CalibrationError, calibrate, labelled_pairs, plot_calibration

    if score_field not in ("auto", "score", "fine_score", "normalized_score"):
        typer.echo(f"dupwatch calibrate: unknown --score-field {score_field!r}", err=True)
        raise typer.Exit(EXIT_USAGE)
    level_list = cli_lists.names(levels)
    if len(truth) != len(scores):
        typer.echo(f"dupwatch calibrate: {len(truth)} --truth and {len(scores)} --scores given; one --scores per --truth, in the same order", err=True)
        raise typer.Exit(EXIT_USAGE)
    if holdout is not None and holdout_truth is None and len(truth) > 1:
        typer.echo("dupwatch calibrate: --holdout needs --holdout-truth when there are several --truth sets", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        pairs = [p for t, sc in zip(truth, scores, strict=True) for p in labelled_pairs(read_truth_csv(t), read_scores_csv(sc))]
        hold = None
        if holdout is not None:
            hold = labelled_pairs(read_truth_csv(holdout_truth if holdout_truth is not None else truth[0]), read_scores_csv(holdout))
        video_groups = _merge_video_groups([_read_video_groups(g) for g in groups]) if groups else None
    except (TruthFormatError, CalibrationError, OSError, ValueError) as exc:
        typer.echo(f"dupwatch calibrate: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    fields: dict[str, str] = {}
    for item in level_field or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            typer.echo(f"dupwatch calibrate: --level-field wants LEVEL=FIELD, got {item!r}", err=True)
            raise typer.Exit(EXIT_USAGE)
        fields[name.strip()] = value.strip()
    scored = [p for p in pairs if p.score is not None]
    if level_field is None and scored and all(p.copy_score is not None for p in scored):
        fields = {"copy": "copy_score"}
        if all(p.fine_score is not None for p in scored):
            fields["incident"] = "fine_score"
    try:
        cal = calibrate(
            pairs,
            targets={"copy": target_precision, "incident": incident_target_precision},
            levels=level_list,  # type: ignore[arg-type]
            min_support=min_support,
            min_positives=min_positives,
            confidence=confidence,
            score_field=score_field,  # type: ignore[arg-type]
            holdout=hold,
            level_fields=fields,
        )
    except CalibrationError as exc:
        typer.echo(f"dupwatch calibrate: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None

    used = ", ".join(f"{name}: {cal.field_of(name)}" for name in cal.levels)
    typer.echo(f"calibration on {sum(p.score is not None for p in pairs)} scored pairs ({used})")
    header = f"{'level':<9} {'threshold':>10} {'target':>7} {'precision':>10} {'recall':>8} {'support':>8} {'positives':>9} {'µAP':>7}"
    typer.echo(header)
    for name, lv in cal.levels.items():
        typer.echo(f"{name:<9} {lv.threshold:>10.4f} {lv.target_precision:>7.3f} {lv.precision:>10.4f} {lv.recall:>8.4f} "
                   f"{lv.support:>8d} {lv.positives:>9d} {lv.micro_ap:>7.4f}")
    if hold is not None:
        typer.echo(f"holdout ({sum(p.score is not None for p in hold)} scored pairs)")
        typer.echo(f"{'level':<9} {'threshold':>10} {'precision':>10} {'recall':>8} {'support':>8} {'positives':>9} {'µAP':>7}")
        for name, lv in cal.levels.items():
            h = lv.holdout
            assert h is not None
            typer.echo(f"{name:<9} {lv.threshold:>10.4f} {_fmt(h.precision):>10} {h.recall:>8.4f} {h.support:>8d} "
                       f"{h.positives:>9d} {h.micro_ap:>7.4f}")
            if h.precision is not None and h.precision < lv.target_precision:
                typer.echo(f"  warning: {name} holdout precision {h.precision:.4f} is below the target {lv.target_precision:.3f}")
    if video_groups is not None:
        from dataclasses import replace

        bounds = _echo_grouped_bounds(cal, pairs, video_groups, min_support, confidence, group_draws)
        cal = replace(cal, stats={**cal.stats, "grouped_bounds": bounds})
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_calibration(cal, pairs, plot)
    typer.echo(f"plot: {plot}")
    if bundle is not None:
        bundle.mkdir(parents=True, exist_ok=True)
        out = bundle / "calibration.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(cal.to_json() + "\n", encoding="utf-8")
        tmp.replace(out)
        typer.echo(f"calibration: {out}")
        if (bundle / "manifest.json").is_file():
            from inference.bundle import BundleWriter

            writer = BundleWriter.update(bundle)
            writer.set_calibration(cal.to_dict())
            writer.write()
            typer.echo(f"thresholds stored in {bundle / 'manifest.json'}")


def _read_video_groups(path: Path) -> dict[str, str]:
    """``video → group`` from a CSV (``video,group``) or a benchmark folder (each video's source)."""
    import csv

    if path.is_dir():
        from evaluation.builder import read_derivations

        return {d.video: d.source for d in read_derivations(path)}
    from detect.group_bound import read_groups

    with path.open(newline="", encoding="utf-8") as fh:
        return read_groups(list(csv.DictReader(fh)))


def _merge_video_groups(maps: list[dict[str, str]]) -> dict[str, str]:
    """One ``video → group`` map of several sets; a video two sets put in different groups is an error."""
    out: dict[str, str] = {}
    for m in maps:
        for video, group in m.items():
            if out.setdefault(video, group) != group:
                raise ValueError(f"--groups: video {video!r} is in group {out[video]!r} and in {group!r}")
    return out


def _echo_grouped_bounds(cal: Any, pairs: Any, video_groups: dict[str, str], min_support: int, confidence: float | None,
                         draws: int) -> dict[str, dict[str, Any]]:
    """Print each level's group-resampled bound; the bounds by level, as the calibration's stats keep them."""
    from detect.calibration import CalibrationError
    from detect.group_bound import grouped_bound

    level_conf = confidence if confidence is not None else 0.9
    typer.echo(f"precision resampled by group ({draws} draws, {level_conf:g} confidence; the thresholds keep the rule above)")
    out = {}
    for name, lv in cal.levels.items():
        try:
            g = grouped_bound(pairs, name, cal.field_of(name), lv.threshold, lv.target_precision, video_groups,
                              confidence=level_conf, min_support=min_support, draws=draws)
        except CalibrationError as exc:
            typer.echo(f"dupwatch calibrate: --groups: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        reach = "never" if g.reaches_target_from is None else f"from {g.reaches_target_from:.4f}"
        typer.echo(f"{name:<9} {g.groups} groups: bound {g.bound_at_threshold:.4f} at {lv.threshold:.4f}; "
                   f"reaches {lv.target_precision:.3f} {reach}")
        out[name] = g.to_dict()
    return out


def _read_body(body_file: Path | None) -> bytes:
    if body_file is None or str(body_file) == "-":
        return sys.stdin.buffer.read()
    return body_file.read_bytes()


@alerts_app.command("verify")
def alerts_verify(
    secret: Annotated[str, typer.Option("--secret", envvar="DUPWATCH_WEBHOOK_SECRET", show_envvar=True,
                                        help="whsec_<base64> or raw secret.")],
    msg_id: Annotated[str, typer.Option("--id", help="The webhook-id header.")],
    timestamp: Annotated[str, typer.Option("--timestamp", help="The webhook-timestamp header.")],
    signature: Annotated[str, typer.Option("--signature", help="The webhook-signature header.")],
    body_file: Annotated[Optional[Path], typer.Option("--body-file", help="Raw body bytes; stdin if omitted or '-'.")] = None,
    tolerance_s: Annotated[float, typer.Option("--tolerance", help="Allowed clock difference, seconds.")] = 300.0,
) -> None:
    """Exit 0 if the signature is valid for this body, 1 with the reason otherwise."""
    from detect.signing import WebhookVerificationError, verify

    try:
        body = _read_body(body_file)
    except OSError as exc:
        typer.echo(f"invalid: cannot read body: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        verify(secret, msg_id, timestamp, body, signature, tolerance_s=tolerance_s)
    except WebhookVerificationError as exc:
        typer.echo(f"invalid: {exc.reason}: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo("valid")


@alerts_app.command("sign")
def alerts_sign(
    secret: Annotated[str, typer.Option("--secret", envvar="DUPWATCH_WEBHOOK_SECRET", show_envvar=True,
                                        help="whsec_<base64> or raw secret.")],
    msg_id: Annotated[str, typer.Option("--id", help="The webhook-id (idempotency key).")],
    timestamp: Annotated[Optional[int], typer.Option("--timestamp", help="Unix seconds (default: now).")] = None,
    body_file: Annotated[Optional[Path], typer.Option("--body-file", help="Raw body bytes; stdin if omitted or '-'.")] = None,
) -> None:
    """Print the Standard Webhooks headers for a body as JSON (for receivers' tests)."""
    from detect.signing import WebhookVerificationError, signature_headers

    body = _read_body(body_file)
    ts = int(time.time()) if timestamp is None else timestamp
    try:
        headers = signature_headers(secret, msg_id, ts, body)
    except WebhookVerificationError as exc:
        typer.echo(f"dupwatch alerts sign: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(json.dumps(headers, indent=2))


def _background_settings(config: Path | None, bundle: Path | None) -> "Any":
    from dupwatch.cli import settings_or_exit

    settings = settings_or_exit(config)
    if bundle is not None:
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"bundle": bundle})})
    return settings


@background_app.command("build")
def background_build(
    directory: Annotated[Optional[Path], typer.Argument(help="Folder of videos (by file suffix).")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="File with one video path a line ('#' comments; relative to the file).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Replace the collection's content instead of adding to it.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also the folder's sub-folders.")] = False,
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="Model bundle (default: model.bundle of the settings).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file (else $DUPWATCH_CONFIG).")] = None,
) -> None:
    """Decode + embed videos like the worker; write their coarse vectors to the background collection (detection.background_collection)."""
    from dupwatch.cli import configure_logging
    from ingest.decode import decode_video
    from ingest.worker import BundleRefused, build_embedder_checked

    if directory is None and list_file is None:
        typer.echo("dupwatch background build: give a folder or --list FILE", err=True)
        raise typer.Exit(EXIT_USAGE)
    settings = _background_settings(config, bundle)
    configure_logging("WARNING")
    from detect.background import background_files, build_background

    try:
        files = background_files(directory, list_file, recursive=recursive)
    except OSError as exc:
        typer.echo(f"dupwatch background build: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not files:
        typer.echo("dupwatch background build: no video file found", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        with typer.progressbar(length=len(files), label="embedding", file=sys.stderr) as bar:
            result = build_background(settings, files, embedder=build_embedder_checked(settings), decode=decode_video,
                                      rebuild=rebuild, progress=lambda _p: bar.update(1))
    except BundleRefused as exc:
        typer.echo(f"dupwatch: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    for name, reason in result.skipped:
        typer.echo(f"skipped   {name}: {reason}", err=True)
    verb = "rebuilt" if rebuild else "added to"
    typer.echo(f"{result.written} videos {verb} {result.collection} ({result.total} rows, {len(result.skipped)} skipped)")
    if result.written == 0:
        raise typer.Exit(EXIT_INVALID)


@background_app.command("info")
def background_info(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file (else $DUPWATCH_CONFIG).")] = None,
) -> None:
    """Print the background collection's name and row count (loads no model)."""
    from detect.background import background_count
    from dupwatch.errors import TransientError

    settings = _background_settings(config, None)
    try:
        name, count = background_count(settings)
    except TransientError as exc:
        typer.echo(f"dupwatch background info: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo(json.dumps({"collection": name, "count": count}))


@detect_app.command("plot")
def detect_plot(
    query: Annotated[Path, typer.Argument(help="Query video file.")],
    reference: Annotated[Path, typer.Argument(help="Reference video file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("pair.png"),
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="Model bundle (default: model.bundle of the settings).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file (else $DUPWATCH_CONFIG).")] = None,
) -> None:
    """PNG of the pair's frame-similarity matrix with the aligned paths and segments."""
    from dupwatch.cli import configure_logging
    from dupwatch.errors import DupwatchError
    from ingest.worker import BundleRefused, build_embedder_checked

    settings = _background_settings(config, bundle)
    configure_logging("WARNING")
    from detect.plots import plot_video_pair
    from ingest.decode import decode_video

    try:
        embedder = build_embedder_checked(settings)
        reps = [embedder.embed(decode_video(p, settings.decode, p.stem or "video"), "default") for p in (query, reference)]
    except BundleRefused as exc:
        typer.echo(f"dupwatch: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except DupwatchError as exc:
        typer.echo(f"dupwatch detect plot: {exc.reason}: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    models = getattr(embedder, "models", None)
    if models is None:
        typer.echo("dupwatch detect plot: the embedder has no pair model", err=True)
        raise typer.Exit(EXIT_USAGE)
    path, score, segments = plot_video_pair(models, reps[0], reps[1], out)
    typer.echo(f"plot: {path} (fine score {score:.4f})")
    for s in segments:
        speed = (s.ref_end - s.ref_start) / (s.query_end - s.query_start)
        typer.echo(f"segment: query {s.query_start:.2f}-{s.query_end:.2f} s <-> reference {s.ref_start:.2f}-{s.ref_end:.2f} s "
                   f"(speed {speed:.2f}x, similarity {s.score:.3f})")
