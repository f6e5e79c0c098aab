"""Adds ``dupwatch bench index`` (Milvus insert/search measurements) to the bench command group.

Light imports only; pymilvus loads inside the command.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dupwatch import cli_lists


def register(app: typer.Typer) -> None:
    try:
        from bench.cli import bench_app
    except ImportError:  # pragma: no cover - bench package absent
        return

    @bench_app.command("index")
    def bench_index(
        uri: Annotated[Optional[str], typer.Option(help="Milvus Lite file or http://host:port (default: a temporary Lite file).")] = None,
        sizes: Annotated[str, typer.Option(help="Comma-separated row counts.")] = "10000,100000",
        index_types: Annotated[str, typer.Option("--index-types", help="Comma-separated: FLAT, IVF_FLAT, HNSW.")] = "FLAT,IVF_FLAT,HNSW",
        dim: Annotated[int, typer.Option(help="Vector dimension.")] = 256,
        queries: Annotated[int, typer.Option(help="Searches timed per configuration.")] = 100,
        consistency: Annotated[str, typer.Option(help="Search consistency level: Strong, Bounded, Session, Eventually.")] = "Strong",
    ) -> None:
        """Insert rows/s and search latency (p50/p95) per index type and size; JSON lines."""
        import tempfile
        from pathlib import Path

        from bench.index import run
        from index.store import release_lite_server

        with tempfile.TemporaryDirectory(prefix="dupwatch-bench-") as tmp:
            target = uri or str(Path(tmp) / "bench.db")
            try:
                run(
                    target,
                    cli_lists.ints(sizes, "--sizes"),
                    [t.upper() for t in cli_lists.names(index_types)],
                    dim,
                    queries,
                    consistency,
                )
            finally:
                if uri is None:
                    release_lite_server(target)
