"""POST /api/v1/contacts/bulk: the import's validation and key semantics, one result per item."""

from __future__ import annotations

from sqlalchemy import func, select

from parley.models import AttributeDefinition, AttributeType, Contact, ContactIdentity, ContactTag
from tests.fixtures.factories import create_channel_account


async def bulk(client, headers, items, **extra):
    return await client.post("/api/v1/contacts/bulk", json={"items": items, **extra}, headers=headers)


async def test_creates_updates_leaves_alone_and_rejects_item_by_item(client, admin_headers, session) -> None:
    session.add(
        AttributeDefinition(key="tier", label="Tier", type=AttributeType.choice, options=["gold", "silver"])
    )
    await session.commit()
    first = await bulk(
        client,
        admin_headers,
        [
            {
                "email": "ann@example.com",
                "display_name": "Ann",
                "attributes": {"tier": "gold"},
                "tags": ["vip"],
            },
            {"email": "bob@example.com", "phone": "+44 20 7946 0018"},
            {"email": "not an email"},
            {"email": "cat@example.com", "attributes": {"tier": "bronze"}},
            {"email": "ANN@example.com", "display_name": "Ann again"},
            {"email": "dan@example.com", "shoe_size": 42},
        ],
        key="email",
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert [r["status"] for r in body["results"]] == [
        "created",
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert (body["created"], body["rejected"]) == (2, 4)
    errors = {r["index"]: r["errors"] for r in body["results"]}
    assert errors[2][0]["field"] == "email"
    assert errors[3] == [{"field": "attr:tier", "message": "'bronze' is not one of: gold, silver"}]
    assert errors[4] == [{"field": "email", "message": "the same key as item 0"}]
    assert errors[5] == [{"field": "shoe_size", "message": "is not a contact field"}]

    again = await bulk(
        client,
        admin_headers,
        [
            {
                "email": "ann@example.com",
                "display_name": "Ann",
                "attributes": {"tier": "gold"},
                "tags": ["vip"],
            },
            {"email": "bob@example.com", "display_name": "Bob"},
        ],
        key="email",
    )
    assert [r["status"] for r in again.json()["results"]] == ["unchanged", "updated"]
    assert again.json()["results"][0]["contact_id"] == body["results"][0]["contact_id"]
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(Contact)) == 2
    bob = await session.scalar(select(Contact).where(Contact.email == "bob@example.com"))
    assert bob is not None and (bob.display_name, bob.phone) == ("Bob", "+442079460018")
    assert await session.scalar(select(ContactTag.source)) == "api"


async def test_openids_need_their_account_and_are_scoped_to_it(client, admin_headers, session) -> None:
    account = await create_channel_account(session, type="wechat")
    await session.commit()
    missing = await bulk(client, admin_headers, [{"wechat_openid": "oABC123456"}], key="wechat_openid")
    assert missing.status_code == 422
    made = await bulk(
        client,
        admin_headers,
        [{"wechat_openid": "oABC123456", "display_name": "Fan"}],
        key="wechat_openid",
        account_id=str(account.id),
    )
    assert made.json()["created"] == 1
    identity = await session.scalar(select(ContactIdentity).where(ContactIdentity.value == "oABC123456"))
    assert identity is not None and (identity.scope, identity.account_id) == (str(account.id), account.id)


async def test_too_many_items_or_a_bad_key_are_refused_whole(client, admin_headers, session) -> None:
    too_many = await bulk(
        client, admin_headers, [{"email": f"p{i}@example.com"} for i in range(1001)], key="email"
    )
    assert too_many.status_code == 422
    bad_key = await bulk(client, admin_headers, [{"email": "a@example.com"}], key="city")
    assert bad_key.status_code == 422 and "cannot identify" in bad_key.json()["detail"]
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(Contact)) == 0
