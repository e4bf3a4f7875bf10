"""Process-level tuning for a media server.

CPython's full (generation 2) garbage collection stops the event loop for as long as it
takes to scan every tracked object: 40-150 ms were measured here with a room of ten
(benchmarks/sfu_bench.py), which shows up directly as forwarding delay. Packets are
short-lived and freed by reference counting, but aiortc's jitter buffers keep a few
seconds of packets alive, long enough to be promoted to the oldest generation, and that
churn keeps triggering full collections that find nothing to collect.

So, once start-up is done: collect, then freeze what start-up built (imports, settings,
templates, migrations) out of the collector's reach, and make full collections rarer.
Cycles are still collected; they just wait longer.
"""

from __future__ import annotations

import gc

# Full collections after this many generation-1 collections (CPython's default is 10).
FULL_COLLECTION_EVERY = 100


def tune_garbage_collector() -> None:
    """Call once, after start-up and before serving traffic."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
