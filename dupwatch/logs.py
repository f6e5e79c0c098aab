"""Logging set-up for entry points (the CLI, ``python -m ingest.worker``); library modules only get
their logger."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO") -> None:
    """Only the entry point configures logging (library modules just get their logger)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Milvus Lite's in-process gRPC shim logs a traceback for every call it does not implement
    # (AllocTimestamp on upsert); pymilvus falls back by itself, so the traceback is noise.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
