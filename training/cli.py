"""``dupwatch train ...``: one subcommand per trainer.

Commands import torch and the trainer inside the function body so that ``--help`` stays fast.
"""

from __future__ import annotations

import typer

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
    fps: float = typer.Option(8.0, help="Frame sampling rate of the training clips."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(True, help="Continue from <out>/checkpoint.pt when present."),
    evaluate: bool = typer.Option(True, help="Print copy-detection mAP of the trained vs an untrained network."),
) -> None:
    """Self-supervised DRCA training on real sample videos, then DCCM fine-tuning."""
    from training.drca import DRCATrainConfig, train_drca

    cfg = DRCATrainConfig(
        preset=preset, img_size=img_size, k=k, steps_full=steps_full, steps_dccm=steps_dccm, batch_size=batch_size,
        lr=lr, queue_size=queue_size, fps=fps, device=device,
    )
    result = train_drca(cfg, out, resume=resume)
    typer.echo(f"checkpoint: {result.checkpoint}\npublished-layout weights: {result.published}\nloss curve: {result.loss_curve}")
    if result.losses:
        typer.echo(f"loss: first {result.losses[0]:.4f} last {result.losses[-1]:.4f} ({len(result.losses)} steps)")
    if evaluate:
        from bench.drca import compare_trained_vs_untrained
        from training.drca import ClipCorpus, default_videos

        mc = cfg.model_config()
        corpus = ClipCorpus.from_videos(
            default_videos(), mc.num_frames, cfg.fps, int(cfg.img_size * 1.25), cfg.clip_stride, cfg.holdout_fraction
        )
        cmp = compare_trained_vs_untrained(result.model, corpus, cfg.img_size)
        typer.echo(f"copy-detection mAP ({cmp.num_queries} queries): untrained {cmp.untrained:.3f} trained {cmp.trained:.3f}")
