"""``parley bench …``: each benchmark sets up what it needs, runs, cleans up, and prints JSON last."""

from __future__ import annotations

from parley.bench import inbound, keywords, outbound

__all__ = ["inbound", "keywords", "outbound"]
