"""``parley bench …``: each benchmark sets up what it needs, runs, cleans up, and prints JSON last."""

from __future__ import annotations

from parley.bench import contact_import, inbound, keywords, outbound, pipeline, segments
from parley.bench import routing as routing_bench

__all__ = ["contact_import", "inbound", "keywords", "outbound", "pipeline", "routing_bench", "segments"]
