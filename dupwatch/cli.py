"""The ``dupwatch`` command line.

Each top-level package contributes its commands through ``<package>/cli.py::register``;
those modules import only light dependencies at module level so that ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dupwatch import __version__
from dupwatch.config import ConfigError, Settings, load_settings, masked_dump
from dupwatch.logs import configure_logging

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
    """The embedded default end to end: real videos and edited copies → default bundle → Milvus Lite → checked alerts.

    Exits 1 when an edited copy is missed or an alert pairs the wrong videos or segments.
    """
    from dupwatch.demo import format_table, run_demo, summary

    settings = settings_or_exit(config)
    configure_logging("WARNING")
    typer.echo(f"preparing demo videos in {folder} (real videos shipped offline + real edited copies)")
    result = run_demo(settings, folder, db, progress=typer.echo)
    typer.echo("")
    typer.echo(format_table(result))
    typer.echo("")
    typer.echo(summary(result) + f" (bundle {settings.model.bundle})")
    if not result.ok:
        raise typer.Exit(1)


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
