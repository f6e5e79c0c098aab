"""The three failure classes every stage uses (style.md rule 4).

- :class:`TransientError`: a dependency is down or slow (Milvus, Kafka, webhook 5xx, disk full).
  The event is retried with backoff and its offset is not committed.
- :class:`PermanentError`: the input itself is bad (malformed event, refused URL, corrupt or
  empty video). The event goes to the dead-letter topic with ``reason`` and is committed.
- Anything else is a bug: the worker crashes and Kubernetes restarts it.

``reason`` is a short, stable, snake_case code (used as a metric label and in dead-letter
records); ``message`` is for humans.
"""

from __future__ import annotations


class DupwatchError(Exception):
    """Base class; carries a stable machine-readable ``reason``."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class TransientError(DupwatchError):
    """Retry later; do not commit, do not dead-letter (until the attempt budget is spent)."""

    reason = "transient"


class PermanentError(DupwatchError):
    """Dead-letter with this reason; retrying cannot help."""

    reason = "permanent"
