"""Logging set-up of the entry points: plain text or one JSON object per line (``log_format``).

Library modules only get their logger. Structured fields are passed as ``extra={...}``; the text
format shows the message alone (callers put the fields in it as ``key=value``), the JSON format
adds every extra field as a top-level key next to ``ts``, ``level``, ``logger`` and ``message``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Literal

from dupwatch.redact import install_redaction

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
    ``extra`` fields, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: LogFormat = "text") -> None:
    """Root logger on stderr at ``level`` in ``fmt``; a second call replaces the handler of the
    first (other handlers, e.g. a test runner's, stay)."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Webhook URLs may carry tokens (``?token=``), and urllib3 logs request lines at DEBUG.
    install_redaction()
    # Milvus Lite's in-process gRPC shim logs a traceback for every call it does not implement
    # (AllocTimestamp on upsert); pymilvus falls back by itself, so the traceback is noise.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
