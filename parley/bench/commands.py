"""``parley bench …``: each benchmark sets up what it needs, runs, cleans up, and prints JSON last."""

from __future__ import annotations

from parley.bench import contact_import, inbound, outbound

__all__ = ["contact_import", "inbound", "outbound"]
