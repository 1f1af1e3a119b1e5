"""Process-wide channel plumbing: one pooled HTTP client and the shared token store."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx

from parley.channels.base import ChannelAdapter
from parley.channels.service import channel_account
from parley.channels.tokens import DatabaseTokenStore
from parley.context import Context
from parley.models import ChannelAccount

_KEY = "channels.runtime"


class ChannelRuntime:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self.tokens = DatabaseTokenStore(ctx.sessionmaker, ctx.secret_box)
        self._adapters: dict[tuple[uuid.UUID, datetime], ChannelAdapter] = {}

    def adapter(self, account: ChannelAccount) -> ChannelAdapter:
        """The account's adapter, reused until the account changes (decrypting credentials costs per call)."""
        key = (account.id, account.updated_at)
        found = self._adapters.get(key)
        if found is None:
            # Drop stale versions of this account so rotated credentials are not kept around.
            for stale in [k for k in self._adapters if k[0] == account.id]:
                del self._adapters[stale]
            found = channel_account.adapter(
                account, box=self.ctx.secret_box, http=self.http, tokens=self.tokens
            )
            self._adapters[key] = found
        return found

    async def close(self) -> None:
        await self.http.aclose()


def runtime(ctx: Context) -> ChannelRuntime:
    found = ctx.extras.get(_KEY)
    if found is None:
        found = ChannelRuntime(ctx)
        ctx.extras[_KEY] = found
        ctx.on_close.append(found.close)
    return found
