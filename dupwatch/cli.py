"""The ``dupwatch`` command line.

Each top-level package contributes its commands through ``<package>/cli.py::register``;
those modules import only light dependencies at module level so that ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dupwatch import __version__
from dupwatch.config import ConfigError, Settings, load_settings, masked_dump
from dupwatch.redact import install_redaction

COMMAND_PACKAGES = ("ingest", "inference", "export", "training", "detect", "bench", "index")

app = typer.Typer(
    name="dupwatch",
    help="Streaming near-duplicate video detection (Kafka → models → Milvus → alerts).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="YAML config file (else $DUPWATCH_CONFIG; env vars DUPWATCH_* override it)."),
]


def settings_or_exit(config: Path | None) -> Settings:
    """Load settings at the edge; print a one-line error naming the field and exit 2 on failure."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"dupwatch: {exc}", err=True)
        raise typer.Exit(2) from None


def configure_logging(level: str = "INFO") -> None:
    """Only the entry point configures logging (library modules just get their logger)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Webhook URLs may carry tokens (``?token=``), and urllib3 logs request lines at DEBUG.
    install_redaction()
    # Milvus Lite's in-process gRPC shim logs a traceback for every call it does not implement
    # (AllocTimestamp on upsert); pymilvus falls back by itself, so the traceback is noise.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


@config_app.command("show")
def config_show(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked."""
    settings = settings_or_exit(config)
    data = masked_dump(settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration; exit 0 when it is valid."""
    settings_or_exit(config)
    typer.echo("configuration is valid")


@app.command("demo")
def demo(
    folder: Annotated[Path, typer.Option(help="Where the demo videos are written (kept between runs).")] = Path("var/demo-videos"),
    db: Annotated[Path, typer.Option(help="Milvus Lite file (recreated on each run).")] = Path("var/demo.db"),
    config: ConfigOption = None,
) -> None:
    """The embedded default end to end: real videos of a folder → default bundle → Milvus Lite → near-duplicates."""
    import os

    from dupwatch.demo import prepare_demo_folder

    settings = settings_or_exit(config)
    configure_logging("WARNING")
    typer.echo(f"preparing demo videos in {folder} (real videos shipped offline + real edited copies)")
    prepare_demo_folder(folder)
    if db.is_dir():  # some Milvus Lite versions keep a folder beside (or as) the database
        import shutil

        shutil.rmtree(db)
    elif db.exists():
        db.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"milvus": settings.milvus.model_copy(update={"uri": str(db)})})
    from ingest.worker import scan_directory

    indexed = alerts = rejected = 0
    for record in scan_directory(settings, folder.resolve()):
        kind = record["type"]
        if kind == "indexed":
            indexed += 1
            typer.echo(f"indexed   {record['video_id']:<36} {record['frames']:>4} frames, {record['clips']} clips")
        elif kind == "dead_letter":
            rejected += 1
            typer.echo(f"rejected  {os.path.basename(record['file']):<36} {record['reason']}: {record['message']}")
        elif kind == "alert":
            alerts += 1
            seg = record["segments"][0] if record["segments"] else None
            where = f"  query {seg['query_start']:.0f}-{seg['query_end']:.0f}s ~ ref {seg['ref_start']:.0f}-{seg['ref_end']:.0f}s" if seg else ""
            p_copy = (record.get("evidence") or {}).get("copy_score")
            typer.echo(
                f"{record['level']:<9} {record['video_id']} ~ {record['matched_video_id']}"
                f"  fine={record['scores']['normalized']:.3f}" + (f" P(copy)={p_copy:.3f}" if p_copy is not None else "") + where
            )
    typer.echo(f"done: {indexed} videos indexed into {db}, {rejected} rejected, {alerts} near-duplicate alerts (bundle {settings.model.bundle})")


def _register_packages() -> None:
    for name in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f"{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name == f"{name}.cli":
                continue
            raise
        module.register(app)


_register_packages()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
