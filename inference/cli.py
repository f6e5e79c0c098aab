"""``dupwatch models ...``: list the registry, fetch published weights, bundle them, check parity.

Only typer is imported at module level; torch and the models load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

models_app = typer.Typer(help="Model zoo: registry, weight downloads, parity with the official code.",
                         no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """Print every registered model with its dims, minimum frames and published files."""
    from inference.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        dims = ", ".join(f"{k}={v}" for k, v in spec.dims.items())
        typer.echo(f"{name:<28} {dims:<28} min_frames={spec.min_frames}  {spec.description}")
        for f in spec.files:
            typer.echo(f"{'':<30}{f.name:<34} {f.url or '(no URL)'}{'  # ' + f.note if f.note else ''}")


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="Registry name (e.g. dns_cg_student) or a published file name.")],
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Target directory (default: cache/models).")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Replace the host of the published URLs (mirror).")] = None,
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Refuse files larger than this.")] = 2 * 1024**3,
) -> None:
    """Download the published weight files of a model (resumable, verified when a sha256 is known)."""
    from dupwatch.errors import DupwatchError
    from dupwatch.paths import cache_dir
    from inference.fetch import fetch_model_files

    target = dest if dest is not None else cache_dir() / "models"
    try:
        paths = fetch_model_files(name, target, base_url=base_url, max_bytes=max_bytes)
    except (ValueError, DupwatchError) as exc:
        typer.echo(f"dupwatch models fetch: {exc}", err=True)
        raise typer.Exit(2) from None
    for p in paths:
        typer.echo(str(p))


@models_app.command("bundle-published")
def models_bundle_published(
    out: Annotated[Path, typer.Option("--out", help="New (or empty) folder for the bundle.")],
    weights_dir: Annotated[Optional[Path], typer.Option("--weights-dir", help="Folder holding published files under their published names (used before downloading).")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Replace the host of the published URLs (mirror).")] = None,
    fine: Annotated[str, typer.Option("--fine", help="Fine network: s2vs_vcdb, s2vs_dns or dns_fg_att_student.")] = "s2vs_vcdb",
    no_coarse: Annotated[bool, typer.Option("--no-coarse", help="Leave out the DnS coarse student (and the selector).")] = False,
    no_selector: Annotated[bool, typer.Option("--no-selector", help="Leave out the DnS selector.")] = False,
    sha256: Annotated[Optional[list[str]], typer.Option("--sha256", help="NAME=HEX: expected sha256 of a published file (repeatable); may not contradict a pinned one.")] = None,
    allow_unpinned: Annotated[bool, typer.Option("--allow-unpinned", help="Accept files whose sha256 nothing pins (trust on first use; recorded in the manifest).")] = False,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Download folder (default: cache/models, shared with 'models fetch').")] = None,
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Refuse downloads larger than this.")] = 2 * 1024**3,
) -> None:
    """Assemble an (uncalibrated) model bundle from the published ResNet-50 weights: torchvision ResNet-50 +
    PCA, S²VS or DnS fine network, DnS coarse student and selector; every file verified and safely loaded."""
    from dupwatch.errors import DupwatchError
    from inference.published_bundle import build_published_bundle

    pins: dict[str, str] = {}
    for item in sha256 or []:
        name, sep, digest = item.partition("=")
        if not sep or not name.strip() or not digest.strip():
            typer.echo(f"dupwatch models bundle-published: --sha256 wants NAME=HEX, got {item!r}", err=True)
            raise typer.Exit(2)
        pins[name.strip()] = digest.strip()
    try:
        result = build_published_bundle(out, fine=fine, coarse=not no_coarse, selector=not no_selector,
                                         weights_dir=weights_dir, base_url=base_url, sha256=pins,
                                         allow_unpinned=allow_unpinned, cache=cache, max_bytes=max_bytes,
                                         echo=lambda m: typer.echo(m, err=True))
    except (ValueError, DupwatchError) as exc:
        typer.echo(f"dupwatch models bundle-published: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"bundle: {result.out}")
    for r in result.files:
        typer.echo(f"  {r.artifact:<9} {r.name:<28} sha256={r.sha256}  [{r.verified}]  from {r.origin}")
    for note in result.notes:
        typer.echo(note if note.startswith("note:") else f"note: {note}")


@models_app.command("parity")
def models_parity(
    directory: Annotated[Optional[Path], typer.Argument(help="Fixture folder (default: tests/fixtures/parity in the repository).")] = None,
    atol: Annotated[float, typer.Option("--atol", help="Largest allowed absolute error.")] = 1e-4,
) -> None:
    """Recompute the official outputs from the fixture checkpoints; exit 1 if any error exceeds atol."""
    from inference.parity import run_parity

    try:
        results = run_parity(directory, atol=atol)
    except FileNotFoundError as exc:
        typer.echo(f"dupwatch models parity: {exc}", err=True)
        raise typer.Exit(2) from None
    if not results:
        typer.echo(f"dupwatch models parity: no fixture files found in {directory}", err=True)
        raise typer.Exit(2)
    for r in results:
        typer.echo(r.line())
    failed = [r for r in results if not r.ok]
    typer.echo(f"{len(results) - len(failed)}/{len(results)} cases within atol {atol:g}")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
