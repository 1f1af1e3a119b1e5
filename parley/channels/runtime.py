"""Process-wide channel plumbing: one pooled HTTP client and the shared token store."""

from __future__ import annotations

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

    def adapter(self, account: ChannelAccount) -> ChannelAdapter:
        return channel_account.adapter(account, box=self.ctx.secret_box, http=self.http, tokens=self.tokens)

    async def close(self) -> None:
        await self.http.aclose()


def runtime(ctx: Context) -> ChannelRuntime:
    found = ctx.extras.get(_KEY)
    if found is None:
        found = ChannelRuntime(ctx)
        ctx.extras[_KEY] = found
        ctx.on_close.append(found.close)
    return found
