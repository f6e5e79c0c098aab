"""The worker as a chain of steps with one lifecycle (submit / poll / join / close).

:func:`build_chain` is the one place the chain is put together, for ``serve``, ``scan`` and the
benchmarks alike; ``mode`` ``serial`` runs every step inline on the calling thread, ``pipelined``
decodes on a pool while the calling thread embeds and decides.
"""

from ingest.steps.base import Envelope, Forwarding, MessageRejected, ProcessingStep
from ingest.steps.budget import DecodedBytes
from ingest.steps.chain import Chain, build_chain
from ingest.steps.stages import Decide, Decode, Done, Embed, Parse, SkipReplay
from ingest.steps.wrappers import FaultInjection, StageClock, Timed

__all__ = [
    "Chain", "DecodedBytes", "Decide", "Decode", "Done", "Embed", "Envelope", "FaultInjection", "Forwarding",
    "MessageRejected", "Parse", "ProcessingStep", "SkipReplay", "StageClock", "Timed", "build_chain",
]
