"""Wrapper steps: behaviour added around a step without touching it (timing, fault injection)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

from ingest.steps.base import Envelope, Forwarding, MessageRejected, ProcessingStep


class StageClock:
    """Seconds the calling thread spent inside each timed step, excluding the steps it called.

    Steps hand envelopes on synchronously (a step's ``submit`` runs the next one's), so one
    shared stack tells a step's own time from its successors'.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float | str]] = []
        self._lock = threading.Lock()

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        if self._stack:
            top = self._stack[-1]
            self.seconds[str(top[0])] += now - float(top[1])
        self._stack.append([name, now])

    def leave(self) -> None:
        now = time.perf_counter()
        name, since = self._stack.pop()
        self.seconds[str(name)] += now - float(since)
        if self._stack:
            self._stack[-1][1] = now


class Timed:
    """Adds the calling thread's time in ``inner`` (not in the steps after it) to ``clock[name]``."""

    def __init__(self, inner: ProcessingStep, name: str, clock: StageClock) -> None:
        self.inner, self.name, self.clock = inner, name, clock

    def _timed(self, fn: Callable[[], None]) -> None:
        self.clock.enter(self.name)
        try:
            fn()
        finally:
            self.clock.leave()

    def submit(self, envelope: Envelope) -> None:
        self._timed(lambda: self.inner.submit(envelope))

    def poll(self) -> None:
        self._timed(self.inner.poll)

    def join(self, timeout: float | None = None) -> None:
        self._timed(lambda: self.inner.join(timeout))

    def close(self) -> None:
        self.inner.close()


class FaultInjection(Forwarding):
    """Calls ``hook(phase)`` before each upload that is still pending enters the wrapped step.

    ``hook`` is :func:`ingest.pipeline.fault_point` for the crash tests' SIGKILL hook, or any
    callable (a test raising an error, a counter).
    """

    def __init__(self, inner: ProcessingStep, phase: str, hook: Callable[[str], None]) -> None:
        super().__init__(inner)
        self.phase, self.hook = phase, hook
        self._rejected: Envelope | None = None

    def submit(self, envelope: Envelope) -> None:
        # an envelope submitted again after MessageRejected enters once
        if envelope.job.status == "pending" and envelope is not self._rejected:
            self.hook(self.phase)
        try:
            self.next.submit(envelope)
        except MessageRejected:
            self._rejected = envelope
            raise
        self._rejected = None
