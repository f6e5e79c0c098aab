"""``dupwatch eval`` and ``dupwatch bench ...``: quality and speed measurements.

Commands import their heavy modules inside the function body so that ``--help`` stays fast.
Each benchmark adds one command to ``bench_app`` below.
"""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Performance and accuracy benchmarks (results as side-by-side ratios).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
