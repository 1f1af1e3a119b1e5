"""Garbage-collector settings for long-running processes that move many small objects.

A process of Parley imports about 150,000 container objects (SQLAlchemy, pydantic, FastAPI,
aiohttp…) that live as long as it does. With CPython's defaults, every 700 net new container
objects start a young collection, and the survivors of in-flight work (a batch of 200 sends holds
its requests, responses and tasks) are promoted until a full collection walks the whole heap again:
measured in ``parley worker`` during ``parley bench outbound``, collections took a third of the
process's CPU (three full ones of 150–350 ms per 10,000 messages, 800 young ones of ~0.8 ms) and
found almost nothing to free, because nearly everything is freed by reference counting.

So, once start-up is done: collect, move everything alive into the permanent generation (never
scanned again), and let the young generation grow larger before it is collected. Reference cycles
are still found, only later; the extra garbage that can wait is bounded by the threshold (tens of
thousands of small objects, a few megabytes). See docs/decisions/0002-delivery.md.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
# Full collections: after every 100 collections of the middle generation instead of 10. With the
# start-up heap frozen, CPython's own brake on them (a full one only once the objects waiting for
# one reach a quarter of those already old) barely applies, and in ``parley serve`` each walked
# what was imported and compiled since start-up for 100-300 ms, stalling every webhook meanwhile.
OLD_THRESHOLD = 100


def settle_heap(young_threshold: int = YOUNG_THRESHOLD, old_threshold: int = OLD_THRESHOLD) -> None:
    """Freezes what start-up left alive and raises the young and old generations' thresholds."""
    gc.collect()
    gc.freeze()
    _, middle, _old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old_threshold)
