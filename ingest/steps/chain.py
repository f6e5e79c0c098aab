"""Puts the steps together (:func:`build_chain`) and drives uploads through them.

:meth:`Chain.submit_all` hands uploads to the chain without waiting for their decisions (the Kafka
loop keeps the chain running across polls and takes the decided ones with :meth:`Chain.drain`);
:meth:`Chain.run` is ``submit_all`` + ``join`` + ``drain`` for a batch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ingest.steps.base import Envelope, MessageRejected, ProcessingStep
from ingest.steps.budget import DecodedBytes
from ingest.steps.stages import Decide, Decode, Done, Embed, Parse, SkipReplay

if TYPE_CHECKING:
    from ingest.pipeline import Job, Pipeline

STEP_NAMES = ("parse", "skip_replay", "decode", "embed", "decide")

Wrap = Callable[[str, ProcessingStep], ProcessingStep]
"""``wrap(step name, step) -> step``: how a caller puts :class:`ingest.steps.Timed` or
:class:`ingest.steps.FaultInjection` around chosen steps."""

REJECTED_BACKOFF_S = 0.002
GIL_SWITCH_INTERVAL_S = float(os.environ.get("DUPWATCH_GIL_SWITCH_S", "0.0005"))
"""With decodes on a pool: PyAV hands every decoded frame back to Python (hundreds per upload), and
each hand-back waits for the GIL; behind the calling thread's Python work (detection) the default
5 ms switch interval starves the decoders. A shorter interval lets them in sooner."""


def _shorten_gil_switch_interval() -> None:
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class Backpressure(Protocol):
    """What the driver of :meth:`Chain.submit_all` does while the chain rejects (``rejected``, called
    repeatedly: wait a little) and once it accepts again (``accepted``)."""

    def rejected(self) -> None: ...

    def accepted(self) -> None: ...


class Chain:
    """The built chain: ``head`` takes envelopes, ``done`` gives back the decided ones."""

    def __init__(self, head: ProcessingStep, decode: Decode, embed: Embed, done: Done, budget: DecodedBytes) -> None:
        self.head = head
        self.decode = decode
        self.embed = embed
        self.done = done
        self.budget = budget
        self.submitted = 0

    def submit(self, envelope: Envelope) -> None:
        self.head.submit(envelope)

    def poll(self) -> None:
        self.head.poll()

    def join(self, timeout: float | None = None) -> None:
        self.head.join(timeout)

    def close(self) -> None:
        self.head.close()

    def drain(self) -> list[Envelope]:
        """The envelopes decided (or aborted) since the last drain, in submission order."""
        return self.done.drain()

    @property
    def in_flight(self) -> int:
        """Uploads submitted and not decided yet (drained or not)."""
        return self.submitted - self.done.count

    def flush(self) -> None:
        """No more uploads are coming for now: the embed step hands on what it holds when it has
        no wait bound (with one, its timer does), so nothing waits for uploads that may never come."""
        if self.embed.max_wait_s is None:
            self.embed.flush()
        self.poll()

    def submit_all(self, jobs: Sequence["Job"], backpressure: Backpressure | None = None) -> None:
        """Every job into the chain, waiting where a step is full; returns without waiting for
        decisions (a poll after each submit moves finished work on).

        While a submit is rejected the chain is polled; when no step has anything to hand on,
        ``backpressure.rejected()`` is the wait (the Kafka loop pauses its partitions and polls
        the broker there), else a short sleep. ``backpressure.accepted()`` follows the submit that
        went through after a rejection.
        """
        for job in jobs:
            envelope = Envelope.of(job)
            rejected = False
            while True:
                try:
                    self.submit(envelope)
                    break
                except MessageRejected:
                    rejected = True
                    self.poll()
                    if self.decode.ready() or self.embed.ready():
                        continue
                    if backpressure is not None:
                        backpressure.rejected()
                    else:
                        time.sleep(REJECTED_BACKOFF_S)
            self.submitted += 1
            if rejected and backpressure is not None:
                backpressure.accepted()
            self.poll()

    def run(self, jobs: Sequence["Job"], backpressure: Backpressure | None = None) -> list[Envelope]:
        """Every job through the chain (:meth:`submit_all`), then everything in flight finished;
        returns the envelopes decided since the last drain."""
        self.submit_all(jobs, backpressure)
        self.join()
        return self.drain()


def build_chain(
    rt: "Pipeline",
    *,
    decode_threads: int = 0,
    embed_max_wait_s: float | None = None,
    wrap: Wrap | None = None,
) -> Chain:
    """Parse → SkipReplay → Decode → Embed → Decide → Done over the work of ``rt``.

    ``decode_threads`` 0: serial, everything on the calling thread (what one upload in flight
    costs); ≥ 1: that many uploads decode at once on a pool while one embed thread runs the
    feature extractor on batches of them and the calling thread decides, in event order. ``embed_max_wait_s``: the longest a decoded upload waits for others to batch with
    (``None``: until the batch is full, the budget is, or the chain is joined).
    """
    w: Wrap = wrap or (lambda name, step: step)
    if decode_threads > 0:
        _shorten_gil_switch_interval()
    budget = DecodedBytes(rt.limits.batch_decoded_bytes)
    done = Done()
    decide = Decide(done, rt)
    embed = Embed(w("decide", decide), rt, budget, batch_frames=rt.limits.batch_frames, max_wait_s=embed_max_wait_s,
                  threaded=decode_threads > 0)
    decode = Decode(w("embed", embed), rt, budget, threads=decode_threads)
    skip = SkipReplay(w("decode", decode), rt)
    head = w("parse", Parse(w("skip_replay", skip), rt))
    return Chain(head, decode, embed, done, budget)
