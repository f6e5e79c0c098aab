"""``dupwatch serve`` (Kafka → Milvus worker) and ``dupwatch scan DIR`` (a folder, embedded).

Only light imports at module level; the worker, Milvus and the models load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

EmbedderOption = Annotated[
    str,
    typer.Option("--embedder", help="module:factory that builds the embedder from the settings."),
]


ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="YAML config file (else $DUPWATCH_CONFIG; env vars DUPWATCH_* override it)."),
]


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        config: ConfigOption = None,
        embedder: EmbedderOption = "inference.served:build_embedder",
    ) -> None:
        """Run the streaming worker: Kafka uploads → models → Milvus → alerts (+ /healthz /readyz /metrics)."""
        from dupwatch.cli import configure_logging, settings_or_exit
        from ingest.worker import BundleRefused, serve

        settings = settings_or_exit(config)
        configure_logging(settings.log_level, settings.log_format)
        try:
            code = serve(settings, embedder_factory=embedder)
        except BundleRefused as exc:
            _refused(exc)
        raise typer.Exit(code)

    @app.command("scan")
    def scan_cmd(
        directory: Annotated[Path, typer.Argument(help="Folder of video files to index and check.", exists=True, file_okay=False)],
        config: ConfigOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
        tenant: Annotated[str, typer.Option(help="Tenant of the scanned videos.")] = "default",
        embedder: EmbedderOption = "inference.served:build_embedder",
        recursive: Annotated[Optional[bool], typer.Option("--recursive/--no-recursive")] = False,
    ) -> None:
        """Index a folder (no Kafka) into Milvus Lite and report duplicates: one line per video, then per detection."""
        import json

        from dupwatch.cli import configure_logging, settings_or_exit
        from ingest.worker import BundleRefused, scan_directory

        settings = settings_or_exit(config)
        configure_logging(settings.log_level, settings.log_format)
        try:
            for record in scan_directory(settings, directory, tenant=tenant, embedder_factory=embedder, recursive=bool(recursive)):
                if as_json:
                    typer.echo(json.dumps(record, sort_keys=True))
                else:
                    typer.echo(_human(record))
        except BundleRefused as exc:
            _refused(exc)


def _refused(exc: Exception) -> NoReturn:
    """A refused model bundle: one line on stderr, exit 2 (like a configuration error)."""
    typer.echo(f"dupwatch: {exc}", err=True)
    raise typer.Exit(2) from None


def _human(record: dict) -> str:
    kind = record.get("type")
    if kind == "indexed":
        return f"indexed     {record['video_id']}  frames={record['frames']} clips={record['clips']}"
    if kind == "dead_letter":
        return f"rejected    {record.get('file')}  {record['reason']}: {record['message']}"
    if kind == "alert":
        return f"{record['level']:<11} {record['video_id']} ~ {record['matched_video_id']}  score={record['scores']['normalized']:.3f}"
    return str(record)
