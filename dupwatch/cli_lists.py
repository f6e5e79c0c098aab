"""Comma-separated values of command-line options (``--lengths 600,1200``, ``--methods a,b``): one
parser for every subcommand, and one usage error (exit 2, naming the option) for a bad entry."""

from __future__ import annotations

import typer

__all__ = ["ints", "names"]


def names(text: str | None) -> list[str]:
    """The stripped, non-empty entries of a comma list (``None`` or blank: none)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def ints(text: str | None, option: str, *, count: int | None = None) -> list[int]:
    """The integers of a comma list; with ``count``, exactly that many. Anything else is a usage
    error naming ``option``."""
    values = []
    for part in names(text):
        try:
            values.append(int(part))
        except ValueError:
            raise typer.BadParameter(f"{part!r} is not an integer", param_hint=option) from None
    if count is not None and len(values) != count:
        raise typer.BadParameter(f"expected {count} comma-separated integers, got {text!r}", param_hint=option)
    return values
