"""Daily API quotas for the follower sync and the profile fetcher, on delivery's flow-control state.

The counters are delivery's (``flow_quota_usage`` or Redis), keyed by account,
API name and the platform's day (midnight Beijing for WeChat), and the limits
are the account's effective ones (``Capabilities.daily_quotas`` under the
operator's overrides, editable on the Operations page): ``user_get`` for the
follower list, ``user_info`` for profiles. A call is counted *before* it is
made, so a crash can only over-count, never let us exceed the quota; a 45009
from the platform marks the counter used up for the rest of the day.
"""

from __future__ import annotations

from datetime import datetime

from parley.context import Context
from parley.db import session_scope
from parley.delivery.engine import shared_flow
from parley.delivery.flow import quota_day
from parley.delivery.service import get_limits
from parley.kit.types import utcnow
from parley.models import ChannelAccount


async def take(ctx: Context, account: ChannelAccount, api: str, n: int = 1) -> datetime | None:
    """Counts ``n`` calls; returns None when they may go, else when the quota resets."""
    now = utcnow()
    day, reset_at = quota_day(account.type, now)
    async with session_scope(ctx.sessionmaker) as session:
        limit = (await get_limits(session, account)).daily_quotas.get(api)
        if limit is None:
            return None
        granted = await shared_flow(ctx).take_quota(session, account.id, api, day, n=n, limit=limit)
    return None if granted >= n else reset_at


async def exhaust(ctx: Context, account: ChannelAccount, api: str) -> datetime:
    """The platform said 45009: nothing more today. Returns when the quota resets."""
    day, reset_at = quota_day(account.type, utcnow())
    async with session_scope(ctx.sessionmaker) as session:
        limit = (await get_limits(session, account)).daily_quotas.get(api)
        if limit is not None:
            await shared_flow(ctx).exhaust_quota(session, account.id, api, day, limit=limit)
    return reset_at
