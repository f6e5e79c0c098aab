"""``dupwatch export``: the bundle's PyTorch models → ONNX (parity-checked) → optionally TensorRT.

Only typer is imported at module level; torch/onnx load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dupwatch import cli_lists


def export_cmd(
    bundle_dir: Annotated[Optional[Path], typer.Argument(help="Model bundle directory (or --bundle).", show_default=False)] = None,
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="Model bundle directory (manifest.json).")] = None,
    tensorrt: Annotated[bool, typer.Option("--tensorrt", help="Also build fp16 TensorRT engines (GPU + tensorrt).")] = False,
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated artifacts: features,coarse,fine,fine_bin,selector,s2vs,drca.")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 18,
    atol: Annotated[float, typer.Option("--atol", help="Largest allowed |ONNX - PyTorch| at export time.")] = 1e-4,
    frames_dtype: Annotated[str, typer.Option("--frames-dtype", help="Feature extractor input: uint8 or float32 (0-255).")] = "uint8",
) -> None:
    """Export the bundle's models to DIR/onnx/, check parity against PyTorch and record them in the manifest."""
    if (bundle_dir is None) == (bundle is None):
        typer.echo("dupwatch export: give the bundle directory once (DIR or --bundle DIR)", err=True)
        raise typer.Exit(2)
    bundle = bundle or bundle_dir
    assert bundle is not None
    from inference.bundle import BundleError

    from inference.graphs import ARTIFACT_GRAPHS
    from export.onnx_export import export_bundle

    wanted = cli_lists.names(models) if models else None
    unknown = [m for m in wanted or [] if m not in ARTIFACT_GRAPHS]
    if unknown:
        typer.echo(f"dupwatch export: unknown model(s) {', '.join(unknown)}; known: {', '.join(ARTIFACT_GRAPHS)}", err=True)
        raise typer.Exit(2)
    try:
        result = export_bundle(bundle, wanted, opset=opset, atol=atol, frames_dtype=frames_dtype)
    except (BundleError, ValueError) as exc:
        typer.echo(f"dupwatch export: {exc}", err=True)
        raise typer.Exit(2) from None
    for r in result.results:
        typer.echo(f"{r.graph:<18} {r.exporter:<11} opset {r.opset}  parity max_abs_err {r.parity_max_abs_err:.2e}  "
                   f"{r.seconds:5.1f}s  {r.path}")
    for graph, reason in result.failures.items():
        typer.echo(f"{graph:<18} NOT WRITTEN: {reason}", err=True)
    if not result.results and not result.failures:
        typer.echo(f"dupwatch export: bundle {bundle} has no exportable PyTorch model"
                   + (f" among {', '.join(wanted)}" if wanted else ""), err=True)
        raise typer.Exit(2)
    if tensorrt:
        from inference.tensorrt_builder import TensorRTUnavailable, build_bundle_engines

        try:
            engines = build_bundle_engines(bundle, graphs=[r.graph for r in result.results] or None)
        except TensorRTUnavailable as exc:
            typer.echo(f"dupwatch export: TensorRT engines not built: {exc}", err=True)
            raise typer.Exit(3) from None
        for graph, path in engines.items():
            typer.echo(f"{graph:<18} tensorrt fp16 engine {path}")
    if result.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
