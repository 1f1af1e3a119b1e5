"""The API client and ``send`` against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import (
    AccountContext,
    Article,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
    Media,
    OutboundMessage,
    OutboundType,
    Template,
)
from parley.channels.tokens import DatabaseTokenStore
from parley.channels.wechat.adapter import WeChatAdapter
from parley.channels.wechat.client import WeChatClient
from parley.db import create_engine, create_sessionmaker
from parley.kit.crypto import SecretBox
from parley.models import ChannelAccount
from parley.sandbox.wechat.state import DEFAULT_TEMPLATES
from tests.channels.wechat.helpers import MemoryTokenStore, act, add_user, register
from tests.conftest import TEST_SECRET

SHIPPED = DEFAULT_TEMPLATES[0]["template_id"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _calls(sim: httpx.AsyncClient, api: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = (await sim.get("/_sandbox/calls", params={"api": api})).json()["calls"]
    return calls


async def _limits(sim: httpx.AsyncClient, app_id: str, **limits: object) -> None:
    response = await sim.post(f"/_sandbox/accounts/{app_id}/limits", json=limits)
    assert response.status_code == 200, response.text


def _text(to: str, key: str = "k1", text: str = "您好") -> OutboundMessage:
    return OutboundMessage(to=to, type=OutboundType.text, text=text, idempotency_key=key)


class TestAccessToken:
    async def test_fetched_once_and_shared_through_the_database(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient, session: AsyncSession, database_url: str
    ) -> None:
        ctx = await register(sim)
        row = ChannelAccount(
            type="wechat",
            name="OA",
            api_base_url=ctx.api_base_url,
            external_id=ctx.external_id,
            config={},
            secrets_sealed="x",
        )
        session.add(row)
        await session.commit()
        ctx = AccountContext(
            account_id=str(row.id),
            external_id=ctx.external_id,
            api_base_url=ctx.api_base_url,
            config=ctx.config,
            secrets=ctx.secrets,
        )
        engine = create_engine(database_url)
        try:
            store = DatabaseTokenStore(create_sessionmaker(engine), SecretBox(TEST_SECRET))
            first, second = WeChatClient(ctx, http, store), WeChatClient(ctx, http, store)
            assert await first.get_menu() is None
            assert await second.get_menu() is None
            assert await second.access_token() == await first.access_token()
        finally:
            await engine.dispose()
        assert len(await _calls(sim, "stable_token")) == 1

    async def test_concurrent_callers_do_not_stampede(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        ctx = await register(sim)
        store = MemoryTokenStore()
        clients = [WeChatClient(ctx, http, store) for _ in range(5)]
        await asyncio.gather(*(c.get_tags() for c in clients for _ in range(4)))
        assert len(await _calls(sim, "stable_token")) == 1

    @pytest.mark.parametrize("errcode", [40001, 42001])
    async def test_refreshed_once_when_rejected(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient, errcode: int
    ) -> None:
        ctx = await register(sim)
        client = WeChatClient(ctx, http, MemoryTokenStore())
        old = await client.access_token()
        await sim.post(f"/_sandbox/accounts/{ctx.external_id}/tokens/invalidate", json={"errcode": errcode})
        assert await client.get_tags()
        assert await client.access_token() != old
        assert len(await _calls(sim, "stable_token")) == 2
        assert [c["errcode"] for c in await _calls(sim, "tags")] == [errcode, 0]

    async def test_a_second_rejection_is_permanent(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        ctx = await register(sim)
        client = WeChatClient(ctx, http, MemoryTokenStore())
        await _limits(sim, ctx.external_id, faults=[{"api": "tags", "errcode": 40001, "count": 2}])
        with pytest.raises(ChannelPermanentError) as info:
            await client.get_tags()
        assert info.value.code == 40001
        assert len(await _calls(sim, "stable_token")) == 2
        assert len(await _calls(sim, "tags")) == 2

    async def test_short_lived_token_is_renewed_before_expiry(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        ctx = await register(sim)
        await _limits(sim, ctx.external_id, token_lifetime_s=60)
        now = [datetime.now(UTC)]
        client = WeChatClient(ctx, http, MemoryTokenStore(), clock=lambda: now[0])
        await client.get_tags()
        # Both clocks move 58 s into a 60 s lifetime: the client renews before the platform would refuse.
        now[0] += timedelta(seconds=58)
        await sim.post("/_sandbox/clock", json={"advance_s": 58})
        await client.get_tags()
        assert [c["errcode"] for c in await _calls(sim, "tags")] == [0, 0]
        assert len(await _calls(sim, "stable_token")) == 2
        await sim.post("/_sandbox/clock", json={"reset": True})

    async def test_wrong_secret(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        ctx = await register(sim)
        bad = AccountContext(
            account_id=ctx.account_id,
            external_id=ctx.external_id,
            api_base_url=ctx.api_base_url,
            config=ctx.config,
            secrets={**ctx.secrets, "app_secret": "wrong"},
        )
        with pytest.raises(ChannelPermanentError) as info:
            await WeChatClient(bad, http, MemoryTokenStore()).get_tags()
        assert info.value.code == 40125


class TestSend:
    async def _setup(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> tuple[WeChatAdapter, AccountContext, str]:
        ctx = await register(sim)
        user = await add_user(sim, ctx.external_id)
        await act(sim, ctx.external_id, user["openid"], type="text", content="在吗")
        return WeChatAdapter(ctx, http, MemoryTokenStore()), ctx, user["openid"]

    async def test_text_is_recorded_with_its_idempotency_key(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        adapter, ctx, openid = await self._setup(sim, http)
        await adapter.send(_text(openid, "same"))
        await adapter.send(_text(openid, "same"))
        record = (await sim.get("/_sandbox/record", params={"app_id": ctx.external_id})).json()
        assert [
            (e["openid"], e["type"], e["content"], e["idempotency_key"], e["duplicate"])
            for e in record["entries"]
        ] == [
            (openid, "text", {"content": "您好"}, "same", False),
            (openid, "text", {"content": "您好"}, "same", True),
        ]

    async def test_every_custom_type(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        adapter, ctx, openid = await self._setup(sim, http)
        await _limits(sim, ctx.external_id, unlimited_window_messages=True)
        await act(sim, ctx.external_id, openid, type="text", content="再来")  # a new window, now unlimited
        media = await adapter.client.upload_media("image", "a.png", b"\x89PNG....", "image/png")
        media_id = media["media_id"]
        messages = [
            OutboundMessage(
                to=openid, type=OutboundType.image, media=Media(media_id=media_id), idempotency_key="1"
            ),
            OutboundMessage(
                to=openid, type=OutboundType.voice, media=Media(media_id=media_id), idempotency_key="2"
            ),
            OutboundMessage(
                to=openid,
                type=OutboundType.video,
                media=Media(media_id=media_id, thumb_media_id="t"),
                title="V",
                idempotency_key="3",
            ),
            OutboundMessage(
                to=openid,
                type=OutboundType.music,
                media=Media(thumb_media_id="t"),
                title="M",
                music_url="http://m",
                idempotency_key="4",
            ),
            OutboundMessage(
                to=openid,
                type=OutboundType.news,
                articles=[Article(title="N", url="http://n")],
                idempotency_key="5",
            ),
            OutboundMessage(
                to=openid,
                type=OutboundType.interactive,
                interactive={
                    "msgmenu": {
                        "head_content": "满意吗",
                        "list": [{"id": "1", "content": "满意"}],
                        "tail_content": "",
                    }
                },
                idempotency_key="6",
            ),
        ]
        for message in messages:
            await adapter.send(message)
        record = (await sim.get("/_sandbox/record", params={"app_id": ctx.external_id})).json()["entries"]
        assert [e["type"] for e in record] == ["image", "voice", "video", "music", "news", "msgmenu"]
        assert record[2]["content"] == {"media_id": media_id, "thumb_media_id": "t", "title": "V"}

    async def test_template(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        ctx = await register(sim)
        await _limits(sim, ctx.external_id, push_job_events=False)
        openid = (await add_user(sim, ctx.external_id))["openid"]
        adapter = WeChatAdapter(ctx, http, MemoryTokenStore())
        template = Template(
            name=SHIPPED, data={"thing1": "订单已发货", "time2": {"value": "2026-01-01"}}, url="https://x"
        )
        result = await adapter.send(
            OutboundMessage(to=openid, type=OutboundType.template, template=template, idempotency_key="t1")
        )
        assert result.platform_message_id
        entry = (await sim.get("/_sandbox/record")).json()["entries"][0]
        assert entry["type"] == "template"
        assert entry["msgid"] == int(result.platform_message_id)
        assert entry["content"]["data"] == {
            "thing1": {"value": "订单已发货"},
            "time2": {"value": "2026-01-01"},
        }

    async def test_templates_are_listed_and_unknown_ones_refused(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        ctx = await register(sim)
        openid = (await add_user(sim, ctx.external_id))["openid"]
        adapter = WeChatAdapter(ctx, http, MemoryTokenStore())
        listed = await adapter.templates()
        assert SHIPPED in [t["template_id"] for t in listed]
        assert {t["title"] for t in listed} >= {"订单发货通知", "预约成功提醒"}
        with pytest.raises(ChannelPermanentError) as info:
            await adapter.send(
                OutboundMessage(
                    to=openid,
                    type=OutboundType.template,
                    template=Template(name="not-in-the-library", data={"thing1": "x"}),
                    idempotency_key="t-unknown",
                )
            )
        assert info.value.code == 40037

    async def test_template_field_too_long(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        ctx = await register(sim)
        openid = (await add_user(sim, ctx.external_id))["openid"]
        adapter = WeChatAdapter(ctx, http, MemoryTokenStore())
        template = Template(name=SHIPPED, data={"thing1": "字" * 21})
        with pytest.raises(ChannelPermanentError) as info:
            await adapter.send(
                OutboundMessage(to=openid, type=OutboundType.template, template=template, idempotency_key="t")
            )
        assert info.value.code == 47003

    async def test_window_closed_after_48_hours(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        adapter, _ctx, openid = await self._setup(sim, http)
        await adapter.send(_text(openid))
        await sim.post("/_sandbox/clock", json={"advance_s": 48 * 3600 + 1})
        try:
            with pytest.raises(ChannelWindowClosedError) as info:
                await adapter.send(_text(openid, "k2"))
            assert info.value.code == 45015
        finally:
            await sim.post("/_sandbox/clock", json={"reset": True})

    async def test_five_messages_per_window(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        adapter, _ctx, openid = await self._setup(sim, http)
        for i in range(5):
            await adapter.send(_text(openid, f"k{i}"))
        with pytest.raises(ChannelWindowClosedError) as info:
            await adapter.send(_text(openid, "k6"))
        assert info.value.code == 45047

    async def test_no_window_without_interaction(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        ctx = await register(sim)
        openid = (await add_user(sim, ctx.external_id))["openid"]
        with pytest.raises(ChannelWindowClosedError):
            await WeChatAdapter(ctx, http, MemoryTokenStore()).send(_text(openid))

    async def test_unknown_and_unsubscribed_users(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient
    ) -> None:
        adapter, ctx, openid = await self._setup(sim, http)
        with pytest.raises(ChannelPermanentError) as unknown:
            await adapter.send(_text("o" + "x" * 27))
        assert unknown.value.code == 40003
        await act(sim, ctx.external_id, openid, type="unfollow")
        with pytest.raises(ChannelPermanentError) as gone:
            await adapter.send(_text(openid))
        assert gone.value.code == 43004

    async def test_daily_quota(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        adapter, ctx, openid = await self._setup(sim, http)
        await _limits(sim, ctx.external_id, daily_quotas={"custom_send": 1})
        await adapter.send(_text(openid))
        with pytest.raises(ChannelQuotaExceededError) as info:
            await adapter.send(_text(openid, "k2"))
        assert info.value.code == 45009
        assert info.value.reset_at is not None

    @pytest.mark.parametrize("fault", [{"errcode": -1}, {"errcode": 45011}, {"http_status": 503}])
    async def test_retriable_failures(
        self, sim: httpx.AsyncClient, http: httpx.AsyncClient, fault: dict[str, int]
    ) -> None:
        adapter, ctx, openid = await self._setup(sim, http)
        await _limits(sim, ctx.external_id, fail_next={"api": "custom_send", "count": 1, **fault})
        with pytest.raises(ChannelRetriableError):
            await adapter.send(_text(openid))
        await adapter.send(_text(openid))
        record = (await sim.get("/_sandbox/record")).json()
        assert (record["count"], record["duplicates"]) == (1, 0)

    async def test_rate_limit(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        adapter, ctx, openid = await self._setup(sim, http)
        await adapter.client.access_token()
        await _limits(sim, ctx.external_id, rate_limit_per_s=1)
        await adapter.send(_text(openid, "a"))
        with pytest.raises(ChannelRetriableError) as info:
            await adapter.send(_text(openid, "b"))
        assert info.value.code == 45011

    async def test_network_error_is_retriable(self, http: httpx.AsyncClient) -> None:
        from tests.channels.wechat.helpers import context

        ctx = context("wx0000000000000001", base_url="http://127.0.0.1:9")
        with pytest.raises(ChannelRetriableError):
            await WeChatAdapter(ctx, http, MemoryTokenStore()).send(_text("o1"))

    async def test_unsendable_types(self, http: httpx.AsyncClient) -> None:
        from tests.channels.wechat.helpers import context

        adapter = WeChatAdapter(context("wx0000000000000001"), http, MemoryTokenStore())
        with pytest.raises(ChannelPermanentError):
            await adapter.send(OutboundMessage(to="o", type=OutboundType.reaction, idempotency_key="x"))


class TestPlatformAPIs:
    async def _client(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> tuple[WeChatClient, str]:
        ctx = await register(sim)
        return WeChatClient(ctx, http, MemoryTokenStore()), ctx.external_id

    async def test_follower_paging(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, app_id = await self._client(sim, http)
        await sim.post(f"/_sandbox/accounts/{app_id}/users", json={"count": 25_000})
        await sim.post(f"/_sandbox/accounts/{app_id}/users", json={"nickname": "gone", "subscribed": False})
        first = await client.followers_page()
        assert (first.total, len(first.openids)) == (25_000, 10_000)
        assert first.next_openid == first.openids[-1]
        openids = [o async for o in client.iter_followers()]
        assert len(openids) == len(set(openids)) == 25_000
        assert len(await _calls(sim, "user_get")) == 1 + 4

    async def test_user_info(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, app_id = await self._client(sim, http)
        user = await add_user(sim, app_id, unionid="oUNION1")
        info = await client.user_info(user["openid"])
        assert (info["subscribe"], info["unionid"]) == (1, "oUNION1")
        assert "nickname" not in info
        others = [(await add_user(sim, app_id))["openid"] for _ in range(3)]
        batch = await client.batch_user_info([user["openid"], *others])
        assert [b["openid"] for b in batch] == [user["openid"], *others]

    async def test_qr_codes(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, _app_id = await self._client(sim, http)
        temporary = await client.create_qrcode(123, expire_seconds=3600)
        assert temporary.expire_seconds == 3600
        permanent = await client.create_qrcode("spring-campaign", permanent=True)
        assert permanent.expire_seconds is None
        image = await http.get(permanent.image_url)
        assert image.status_code == 200
        assert "spring-campaign" in image.text
        with pytest.raises(ChannelPermanentError):
            await client.create_qrcode(100_001, permanent=True)

    async def test_menu(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, app_id = await self._client(sim, http)
        assert await client.get_menu() is None
        menu = {
            "button": [
                {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
                {
                    "name": "菜单",
                    "sub_button": [{"type": "view", "name": "搜索", "url": "https://www.soso.com/"}],
                },
            ]
        }
        await client.create_menu(menu)
        got = await client.get_menu()
        assert got is not None
        assert got["menu"]["button"][1]["sub_button"][0]["url"] == "https://www.soso.com/"
        assert (await sim.get(f"/_sandbox/accounts/{app_id}/menu")).json()["menu"] == got["menu"]
        with pytest.raises(ChannelPermanentError):
            await client.create_menu(
                {"button": [{"type": "click", "name": "名字太长了超过十六字节", "key": "k"}]}
            )
        await client.delete_menu()
        assert await client.get_menu() is None

    async def test_tags(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, app_id = await self._client(sim, http)
        tag = await client.create_tag("广东")
        openids = [(await add_user(sim, app_id))["openid"] for _ in range(3)]
        await client.tag_users(tag["id"], openids)
        assert await client.user_tags(openids[0]) == [tag["id"]]
        page = await client.tag_followers_page(tag["id"])
        assert page.openids == openids
        await client.untag_users(tag["id"], openids[:1])
        assert await client.user_tags(openids[0]) == []
        await client.update_tag(tag["id"], "广州")
        tags = {t["id"]: t for t in await client.get_tags()}
        assert (tags[tag["id"]]["name"], tags[tag["id"]]["count"]) == ("广州", 2)
        with pytest.raises(ChannelPermanentError) as duplicate:
            await client.create_tag("广州")
        assert duplicate.value.code == 45157
        await client.delete_tag(tag["id"])
        assert tag["id"] not in {t["id"] for t in await client.get_tags()}

    async def test_media_upload(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, _app_id = await self._client(sim, http)
        result = await client.upload_media("image", "cat.jpg", b"\xff\xd8\xff" + b"0" * 100, "image/jpeg")
        assert result["type"] == "image"
        stored = await sim.get(f"/_sandbox/media/{result['media_id']}")
        assert stored.content.startswith(b"\xff\xd8\xff")
        with pytest.raises(ChannelPermanentError):
            await client.upload_media("thumb", "big.jpg", b"0" * (65 * 1024), "image/jpeg")

    async def test_oauth_code_exchange(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, app_id = await self._client(sim, http)
        user = await add_user(sim, app_id, nickname="阿强", unionid="oUNION9")
        url = client.authorize_url(
            "https://parley.example/oauth/cb?x=1", scope="snsapi_userinfo", state="csrf42"
        )
        assert url.endswith("#wechat_redirect")
        assert (
            url.index("appid=")
            < url.index("redirect_uri=")
            < url.index("response_type=")
            < url.index("scope=")
            < url.index("state=")
        )
        consent = await http.get(url.split("#")[0] + f"&openid={user['openid']}")
        assert consent.status_code == 302
        callback = httpx.URL(consent.headers["location"])
        assert (callback.host, callback.params["state"], callback.params["x"]) == (
            "parley.example",
            "csrf42",
            "1",
        )
        token = await client.exchange_code(callback.params["code"])
        assert (token.openid, token.unionid, token.scope) == (user["openid"], "oUNION9", "snsapi_userinfo")
        profile = await client.oauth_userinfo(token.access_token, token.openid)
        assert profile["nickname"] == "阿强"
        with pytest.raises(ChannelPermanentError) as reused:
            await client.exchange_code(callback.params["code"])
        assert reused.value.code == 40163

    async def test_mass_send_by_tag_and_list(self, sim: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
        client, app_id = await self._client(sim, http)
        await _limits(sim, app_id, push_job_events=False)
        tag = await client.create_tag("VIP")
        openids = [(await add_user(sim, app_id))["openid"] for _ in range(3)]
        await client.tag_users(tag["id"], openids[:2])
        sent = await client.send_mass(
            "text", {"content": "新品上市"}, tag_id=tag["id"], clientmsgid="c1", idempotency_key="m1"
        )
        again = await client.send_mass("text", {"content": "新品上市"}, tag_id=tag["id"], clientmsgid="c1")
        assert again["errcode"] == 45065
        assert again["msg_id"] == sent["msg_id"]
        await client.send_mass("text", {"content": "hi"}, openids=openids)
        record = (await sim.get("/_sandbox/record", params={"app_id": app_id})).json()["entries"]
        assert sorted(e["openid"] for e in record) == sorted([*openids[:2], *openids])
