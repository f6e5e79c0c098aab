"""The step lifecycle shared by every stage of the chain (in the spirit of getsentry/arroyo).

A step receives :class:`Envelope` s through :meth:`ProcessingStep.submit`, does (or starts) its
work, and hands each envelope on to the next step, in the order it received them. ``poll`` moves
work forward without waiting long; ``join`` finishes everything in flight and joins the next step;
``close`` releases threads. A step that cannot take more work now raises :class:`MessageRejected`
from ``submit``: the caller keeps the envelope, polls the chain and submits it again (the Kafka
loop pauses its partitions meanwhile).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ingest.pipeline import Job


class MessageRejected(Exception):
    """Backpressure: the step is full; submit the same envelope again after a ``poll``."""


@dataclass(frozen=True)
class Envelope:
    """One upload between two steps: its Kafka coordinates and the record of its work.

    The coordinates never change on the way; ``job`` carries the upload's state (event,
    decoded frames, representation, alerts, outcome) that each step fills in.
    """

    topic: str
    partition: int
    offset: int
    job: "Job"
    submitted_at: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, job: "Job") -> "Envelope":
        return cls(topic=job.topic, partition=job.partition, offset=job.offset, job=job)

    def replace(self, **changes: object) -> "Envelope":
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def pending(self) -> bool:
        return self.job.status == "pending"


class ProcessingStep(Protocol):
    def submit(self, envelope: Envelope) -> None:
        """Take ``envelope`` (may raise :class:`MessageRejected`)."""

    def poll(self) -> None:
        """Hand on whatever finished; never waits for long."""

    def join(self, timeout: float | None = None) -> None:
        """Finish everything submitted so far, then join the next step."""

    def close(self) -> None:
        """Release resources (threads); nothing is submitted afterwards."""


class Forwarding:
    """Base for a step with a ``next`` step: ``poll``/``join``/``close`` pass through."""

    def __init__(self, next_step: ProcessingStep) -> None:
        self.next = next_step

    def poll(self) -> None:
        self.next.poll()

    def join(self, timeout: float | None = None) -> None:
        self.next.join(timeout)

    def close(self) -> None:
        self.next.close()
