"""A watchdog for blocking kafka-python calls that never return.

kafka-python 3 runs every blocking consumer call (``poll``, ``commit``, ``end_offsets``...) as a
task on the client's IO thread while the calling thread waits on a ``threading.Event`` without a
timeout. When that task is never run (seen with 3.0.12 after the group leader re-joined on a
metadata change: the IO thread sat in ``select`` while the poll waited), the caller waits forever,
stops heartbeating and the member is evicted; only a pod restart after ``max.poll.interval.ms``
ended it. Upstream added a user-side timeout to that wait (``default_api_timeout_ms``) after the
newest release on PyPI.

:class:`StuckCallGuard` gives every call it watches a deadline (the call's own timeout plus
``kafka.stuck_call_s``). A call still waiting past it is released the way the client releases its
waiters when its IO loop stops: each pending waiter of that client fails with
``KafkaTimeoutError``, and the IO loop is woken so that the next call is served. The caller then
handles the error like any other Kafka error (the worker logs it and polls again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Watched:
    what: str
    deadline: float
    released: bool = False


class StuckCallGuard:
    """Releases a watched kafka-python call that is still blocked past its deadline.

    ``client`` returns the kafka-python client whose calls are watched (a ``KafkaConsumer``); the
    guard reaches its IO loop through the client's ``_net``. A client without one (a test double,
    another version) is watched but never released, and that is logged once.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        stuck_after_s: float,
        *,
        on_release: Callable[[str, float], None] = lambda what, waited_s: None,
        check_every_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.stuck_after_s = stuck_after_s
        self._on_release = on_release
        self._check_every_s = check_every_s
        self._clock = clock
        self._watched: _Watched | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_unsupported = False
        self.released = 0

    def start(self) -> "StuckCallGuard":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="dupwatch-kafka-guard", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @contextmanager
    def watch(self, what: str, timeout_ms: int | float = 0) -> Iterator[None]:
        """Watch one blocking call made inside the block (``timeout_ms``: the call's own timeout)."""
        watched = _Watched(what, self._clock() + timeout_ms / 1000.0 + self.stuck_after_s)
        with self._lock:
            self._watched = watched
        try:
            yield
        finally:
            with self._lock:
                if self._watched is watched:
                    self._watched = None

    def check(self) -> bool:
        """Release the watched call if it is past its deadline; True when one was released."""
        with self._lock:
            watched = self._watched
            if watched is None or watched.released or self._clock() < watched.deadline:
                return False
            watched.released = True
        waited = self._clock() - watched.deadline + self.stuck_after_s
        net = getattr(self._client(), "_net", None)
        if not callable(getattr(net, "_fail_pending_waiters", None)) or not callable(getattr(net, "wakeup", None)):
            if not self._warned_unsupported:
                self._warned_unsupported = True
                log.warning("kafka %s blocked for %.1f s and this client cannot be released (no IO-loop waiters)",
                            watched.what, waited)
            return False
        # counted before the caller is woken, so whoever it tells sees the release
        self.released += 1
        self._on_release(watched.what, waited)
        log.warning("kafka %s blocked for %.1f s (its IO task was never run); releasing it with KafkaTimeoutError",
                    watched.what, waited)
        from kafka.errors import KafkaTimeoutError

        net._fail_pending_waiters(KafkaTimeoutError(f"dupwatch released a kafka {watched.what} blocked for {waited:.1f} s"))
        net.wakeup()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._check_every_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the guard must outlive any one failure
                log.exception("kafka call guard check failed")
