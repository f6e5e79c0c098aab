"""``dupwatch train ...``: one subcommand per trainer.

Commands import torch and the trainer inside the function body so that ``--help`` stays fast.
"""

from __future__ import annotations

import typer

train_app = typer.Typer(help="Train models and write checkpoints / model bundles.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
