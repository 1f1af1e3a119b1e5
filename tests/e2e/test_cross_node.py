"""Two web nodes and a worker on PostgreSQL: a message arriving at node A reaches an agent connected to node B."""

from __future__ import annotations

import asyncio
import json
import os
import re

import httpx
import pytest
from websockets.asyncio.client import connect

from parley.sandbox import wiring
from tests.fixtures.browser import ServerProcess, free_port, server_env
from tests.fixtures.factories import DEFAULT_PASSWORD, create_token, create_user
from tests.fixtures.stack import Stack

pytestmark = [pytest.mark.postgres, pytest.mark.services]

BROKERS = {
    "redis": ("PARLEY_TEST_REDIS_URL", "PARLEY_REDIS_URL"),
    "rabbitmq": ("PARLEY_TEST_RABBITMQ_URL", "PARLEY_RABBITMQ_URL"),
}


async def _cookie(base: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = await client.post(
            "/login", data={"email": email, "password": DEFAULT_PASSWORD, "csrf_token": token}
        )
        return response.cookies["parley_session"]


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
async def test_message_reaches_agent_on_the_other_node(
    broker, backend, database_url, session, simulators, tmp_path
):
    if backend != "postgres":
        pytest.skip("several nodes share PostgreSQL")
    test_var, setting = BROKERS[broker]
    if not os.environ.get(test_var):
        pytest.skip(f"{test_var} is not set")
    await create_user(session, email="agent@example.com", name="Agent", role="agent")
    admin = await create_user(session, email="admin@example.com", name="Admin", role="administrator")
    admin_headers = {"Authorization": f"Bearer {await create_token(session, admin)}"}

    port_a, port_b = free_port(), free_port()
    common = {"PARLEY_EVENT_BUS": broker, setting: os.environ[test_var]}
    node_a = ServerProcess(
        ["serve", "--port", str(port_a), "--no-workers"],
        server_env(database_url, tmp_path, PARLEY_BASE_URL=f"http://127.0.0.1:{port_a}", **common),
        tmp_path / "a.log",
        port_a,
    )
    node_b = ServerProcess(
        ["serve", "--port", str(port_b), "--no-workers"],
        server_env(database_url, tmp_path, PARLEY_BASE_URL=f"http://127.0.0.1:{port_b}", **common),
        tmp_path / "b.log",
        port_b,
    )
    worker = ServerProcess(["worker"], server_env(database_url, tmp_path, **common), tmp_path / "worker.log")
    node_a.start()
    node_b.start()
    worker.start(ready_path=None)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            # Webhooks go to node A: the account's webhook URL is built from A's base URL.
            stack = Stack(node_a.url, simulators, http, admin_headers)
            account, _account_id = await stack.connect_whatsapp()
            await wiring.add_whatsapp_user(
                http, simulators.whatsapp, account.business_account_id, name="Kim", wa_id="821012345678"
            )
            cookie = await _cookie(node_b.url, "agent@example.com")
            async with connect(
                node_b.url.replace("http", "ws") + "/ws",
                additional_headers={"Cookie": f"parley_session={cookie}"},
            ) as socket:
                hello = json.loads(await asyncio.wait_for(socket.recv(), 10))
                assert hello["type"] == "hello"
                await wiring.whatsapp_action(
                    http,
                    simulators.whatsapp,
                    account.business_account_id,
                    "821012345678",
                    type="text",
                    text="안녕하세요",
                )
                async with asyncio.timeout(10):
                    while True:
                        event = json.loads(await socket.recv())
                        if event["type"] == "message.created":
                            break
                assert event["message"]["text"] == "안녕하세요"
                assert event["origin"] != hello["node"]  # published by node A, pushed by node B

                # The agent answers through node B; the worker (a third process) delivers it.
                conversation_id = event["conversation"]["id"]
                reply = await http.post(
                    f"{node_b.url}/api/v1/conversations/{conversation_id}/messages",
                    json={"type": "text", "text": "네, 말씀하세요"},
                    headers=admin_headers,
                )
                assert reply.status_code == 201, reply.text

                async def delivered() -> bool:
                    record = await wiring.record(http, simulators.whatsapp, to="821012345678")
                    return "네, 말씀하세요" in str(record)

                from tests.fixtures.browser import wait_until

                await wait_until(delivered, timeout_s=20)
    finally:
        for process in (node_a, node_b, worker):
            process.stop()
