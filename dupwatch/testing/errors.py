"""Errors raised by the real test services (Kafka broker, Milvus server)."""

from __future__ import annotations


class ServiceUnavailable(RuntimeError):
    """A prerequisite of a test service is missing (no Java, no Maven, no server package).

    The message is one line that says what to install; the test set-up shows it as is.
    """


class ServiceStartError(RuntimeError):
    """A service process started but died or did not become ready in time.

    The message names the log file and quotes its last lines, so the cause is visible
    without opening the file.
    """
