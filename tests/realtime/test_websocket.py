"""The console's websocket: who may connect, and what they hear."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import websockets
import websockets.exceptions
from websockets.asyncio.client import connect

from tests.fixtures.factories import DEFAULT_PASSWORD, create_user


async def _session_cookie(base: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = await client.post(
            "/login", data={"email": email, "password": DEFAULT_PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 303
        return response.cookies["parley_session"]


async def test_signed_out_socket_is_refused(live_server):
    url = live_server.url.replace("http", "ws") + "/ws"
    with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
        async with connect(url) as socket:
            await socket.recv()
    assert closed.value.rcvd.code == 4401


async def test_cross_site_origin_is_refused(live_server, session):
    await create_user(session, email="agent@example.com")
    cookie = await _session_cookie(live_server.url, "agent@example.com")
    url = live_server.url.replace("http", "ws") + "/ws"
    with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
        async with connect(
            url, additional_headers={"Cookie": f"parley_session={cookie}"}, origin="https://evil.example"
        ) as socket:
            await socket.recv()
    assert closed.value.rcvd.code == 4403


async def test_signed_in_agent_gets_hello_and_pong(live_server, session):
    await create_user(session, email="agent@example.com")
    cookie = await _session_cookie(live_server.url, "agent@example.com")
    url = live_server.url.replace("http", "ws") + "/ws"
    async with connect(url, additional_headers={"Cookie": f"parley_session={cookie}"}) as socket:
        hello = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert hello["type"] == "hello"
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5)) == {"type": "pong"}
