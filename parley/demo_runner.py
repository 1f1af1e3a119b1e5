"""``parley demo``: one command from a fresh clone to a console in the browser.

Migrates, seeds people, connects two WeChat accounts (a brand's city accounts
sharing UnionIDs) and a WhatsApp number to the bundled platform simulators,
starts both simulators and the server, and has a few simulated customers write
in so the inbox is not empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import func, select

from parley.app import create_app
from parley.bench.support import Process
from parley.channels.base import ChannelType
from parley.channels.schemas import ChannelAccountCreate
from parley.channels.service import channel_account, webhook_url
from parley.config import Settings, configure, get_settings
from parley.context import Context, build_context
from parley.db import session_scope
from parley.demo import DEMO_LOGINS, seed_people
from parley.migrate import upgrade
from parley.models import ChannelAccount, Conversation
from parley.sandbox import wiring
from parley.sandbox.wiring import WeChatDemoAccount, WhatsAppDemoAccount

WECHAT_PORT = 9101
WHATSAPP_PORT = 9102

WECHAT_ACCOUNTS = (
    WeChatDemoAccount(
        name="Chongqing service account",
        app_id="wx00000000000c0001",
        app_secret="demo-secret-chongqing-000000000001",
        token="demotoken1",
        encoding_aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        original_id="gh_demo00000cq01",
    ),
    WeChatDemoAccount(
        name="Chengdu service account",
        app_id="wx00000000000c0002",
        app_secret="demo-secret-chengdu-0000000000002",
        token="demotoken2",
        encoding_aes_key="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
        original_id="gh_demo00000cd02",
    ),
)
WHATSAPP_ACCOUNT = WhatsAppDemoAccount(
    name="Parley Demo (WhatsApp)",
    business_account_id="100000000000001",
    phone_number_id="200000000000001",
    display_phone_number="+86 23 6000 0000",
    access_token="demo-whatsapp-access-token-0001",
    app_secret="demo-whatsapp-app-secret-0001",
    verify_token="demo-verify-token",
)

# Customers of the demo: (nickname, openid per account, UnionID shared across the brand's accounts).
WECHAT_USERS = (("王芳", "oDemoWangFang", "uDemoWangFang"), ("Chen Jie", "oDemoChenJie", "uDemoChenJie"))
WHATSAPP_USERS = (("Maria Souza", "5511987654321"), ("Li Lei", "8613800138000"))


async def _ensure_accounts(ctx: Context, wechat_url: str, whatsapp_url: str) -> dict[str, ChannelAccount]:
    wanted: list[tuple[ChannelType, str, str, str, dict[str, object]]] = [
        (ChannelType.wechat, a.app_id, a.name, wechat_url, a.credentials()) for a in WECHAT_ACCOUNTS
    ]
    wanted.append(
        (
            ChannelType.whatsapp,
            WHATSAPP_ACCOUNT.phone_number_id,
            WHATSAPP_ACCOUNT.name,
            whatsapp_url,
            WHATSAPP_ACCOUNT.credentials(),
        )
    )
    accounts: dict[str, ChannelAccount] = {}
    async with session_scope(ctx.sessionmaker) as session:
        await seed_people(session)
        for channel_type, external_id, name, api_url, credentials in wanted:
            existing = await session.scalar(
                select(ChannelAccount).where(
                    ChannelAccount.type == channel_type.value, ChannelAccount.external_id == external_id
                )
            )
            if existing is None:
                existing = await channel_account.create(
                    session,
                    actor=None,
                    box=ctx.secret_box,
                    data=ChannelAccountCreate(
                        type=channel_type, name=name, api_base_url=api_url, credentials=credentials
                    ),
                )
            else:
                existing.api_base_url = api_url
            accounts[external_id] = existing
    return accounts


async def _wire_simulators(
    ctx: Context, accounts: dict[str, ChannelAccount], wechat_url: str, whatsapp_url: str
) -> None:
    base = ctx.settings.base_url
    async with httpx.AsyncClient(timeout=30) as client:
        for demo in WECHAT_ACCOUNTS:
            await wiring.register_wechat(client, wechat_url, demo, webhook_url(base, accounts[demo.app_id]))
            for nickname, openid, unionid in WECHAT_USERS:
                # The same person has a different OpenID on each account and one UnionID.
                openid_here = f"{openid}{demo.app_id[-1]}"
                await wiring.add_wechat_user(
                    client,
                    wechat_url,
                    demo.app_id,
                    nickname=nickname,
                    openid=openid_here,
                    unionid=unionid,
                    # One customer is new, so the demo shows a follow arriving.
                    subscribed=openid_here != "oDemoWangFang1",
                )
        await wiring.register_whatsapp(
            client,
            whatsapp_url,
            WHATSAPP_ACCOUNT,
            webhook_url(base, accounts[WHATSAPP_ACCOUNT.phone_number_id]),
        )
        for name, wa_id in WHATSAPP_USERS:
            await wiring.add_whatsapp_user(
                client, whatsapp_url, WHATSAPP_ACCOUNT.business_account_id, name=name, wa_id=wa_id
            )

        async with session_scope(ctx.sessionmaker, write=False) as session:
            has_conversations = await session.scalar(select(func.count()).select_from(Conversation))
        if has_conversations:
            return
        chongqing = WECHAT_ACCOUNTS[0]
        await wiring.wechat_action(client, wechat_url, chongqing.app_id, "oDemoWangFang1", type="follow")
        await wiring.wechat_action(
            client,
            wechat_url,
            chongqing.app_id,
            "oDemoWangFang1",
            type="text",
            content="你好，我的订单什么时候发货？",
        )
        await wiring.wechat_action(
            client,
            wechat_url,
            WECHAT_ACCOUNTS[1].app_id,
            "oDemoChenJie2",
            type="text",
            content="门店周末营业吗？",
        )
        await wiring.whatsapp_action(
            client,
            whatsapp_url,
            WHATSAPP_ACCOUNT.business_account_id,
            "5511987654321",
            type="text",
            text="Hi! Is my order on its way?",
        )


def _start_simulator(kind: str, port: int, settings: Settings) -> Process:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        raise RuntimeError(
            f"port {port} is already in use (another demo still running?); stop it and try again"
        )
    log = Path(settings.data_dir) / f"{kind}-simulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return Process(["parley", "sandbox", kind, "--port", str(port)], dict(os.environ), log, port).start(
        "/_sandbox/stats", timeout_s=30
    )


def run_demo(*, host: str, port: int) -> None:
    settings = get_settings()
    if settings.base_url == Settings.model_fields["base_url"].default:
        settings = configure(settings.model_copy(update={"base_url": f"http://{host}:{port}"}))
    upgrade(settings.database_url)
    wechat_url, whatsapp_url = f"http://127.0.0.1:{WECHAT_PORT}", f"http://127.0.0.1:{WHATSAPP_PORT}"
    simulators = [
        _start_simulator("wechat", WECHAT_PORT, settings),
        _start_simulator("whatsapp", WHATSAPP_PORT, settings),
    ]

    async def main() -> None:
        ctx = build_context(settings)
        try:
            accounts = await _ensure_accounts(ctx, wechat_url, whatsapp_url)
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, run_workers=True),
                    host=host,
                    port=port,
                    log_config=None,
                    access_log=False,
                )
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110  (uvicorn exposes only a flag)
                await asyncio.sleep(0.05)
            await _wire_simulators(ctx, accounts, wechat_url, whatsapp_url)
            url = f"http://{host}:{port}/"
            lines = [
                "",
                "Parley demo is running.",
                f"  Console:             {url}",
                f"  API docs:            {url}api/docs",
                f"  WeChat simulator:    {wechat_url}/  (play the customer)",
                f"  WhatsApp simulator:  {whatsapp_url}/",
                "  Logins:",
                *(f"    {login.role:<14} {login.email:<26} {login.password}" for login in DEMO_LOGINS),
                "  Stop with Ctrl+C.",
                "",
            ]
            print("\n".join(lines), flush=True)  # noqa: T201
            await serving
        finally:
            await ctx.close()

    try:
        asyncio.run(main())
    finally:
        for simulator in simulators:
            simulator.stop()
