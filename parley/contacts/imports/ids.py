"""Time-ordered ids (UUID version 7, RFC 9562) for rows created in bulk.

Random UUID4 keys land all over a B-tree, so each insert of a 100,000-row import
touches a different page; version-7 ids start with the time in milliseconds,
so a batch's rows go to the right-hand edge of the index together. They are
ordinary UUIDs to every reader.
"""

from __future__ import annotations

import os
import time
import uuid

_RANDOM_62 = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000 & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = ms << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64 | 0b10 << 62 | (rand & _RANDOM_62)
    return uuid.UUID(int=value)
