"""Channel accounts: credentials encrypted at rest, senders, and live adapters for them."""

from __future__ import annotations

import uuid
from typing import Any, get_args

import httpx
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from parley.auth.service import Principal, audit
from parley.channels.base import AccountContext, ChannelAdapter, ChannelConfig, ChannelType, TokenStore
from parley.channels.registry import adapter_class
from parley.channels.schemas import (
    ChannelAccountCreate,
    ChannelAccountRead,
    ChannelAccountUpdate,
    SenderCreate,
    SenderRead,
)
from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.kit.crypto import SecretBox, mask
from parley.models import ChannelAccount, ChannelSender

# Which config field is the platform's own id of the account (found in every payload).
EXTERNAL_ID_FIELD = {ChannelType.wechat: "app_id", ChannelType.whatsapp: "phone_number_id"}


def secret_fields(schema: type[ChannelConfig]) -> set[str]:
    names = set()
    for name, info in schema.model_fields.items():
        annotation = info.annotation
        if annotation is SecretStr or SecretStr in get_args(annotation):
            names.add(name)
    return names


def _validate(
    channel_type: ChannelType, credentials: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validates with the adapter's schema and splits into shown config and sealed secrets."""
    schema = adapter_class(channel_type).config_schema
    try:
        parsed = schema.model_validate(credentials)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'credentials'}: {e['msg']}" for e in exc.errors()
        )
        raise UnprocessableEntity(f"Invalid {channel_type.value} credentials: {problems}") from exc
    secrets = secret_fields(schema)
    config: dict[str, Any] = {}
    sealed: dict[str, str] = {}
    for name, value in parsed.model_dump().items():
        if name in secrets:
            if value is not None:
                sealed[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        else:
            config[name] = value
    return config, sealed


def webhook_url(base_url: str, account: ChannelAccount) -> str:
    return f"{base_url.rstrip('/')}/channels/{account.type}/{account.id}/webhook"


class ChannelAccountService:
    def _query(self) -> Any:
        return select(ChannelAccount).options(selectinload(ChannelAccount.senders))

    async def list_accounts(
        self, session: AsyncSession, *, channel_type: str | None = None
    ) -> list[ChannelAccount]:
        stmt = self._query().order_by(ChannelAccount.type, ChannelAccount.name)
        if channel_type:
            stmt = stmt.where(ChannelAccount.type == channel_type)
        return list((await session.scalars(stmt)).all())

    async def get(self, session: AsyncSession, account_id: uuid.UUID) -> ChannelAccount:
        account = await session.scalar(self._query().where(ChannelAccount.id == account_id))
        if account is None:
            raise NotFound("Channel account not found")
        return account  # type: ignore[no-any-return]

    async def create(
        self, session: AsyncSession, *, actor: Principal | None, box: SecretBox, data: ChannelAccountCreate
    ) -> ChannelAccount:
        config, sealed = _validate(data.type, data.credentials)
        external_id = str(config.get(EXTERNAL_ID_FIELD[data.type], ""))
        clash = await session.scalar(
            select(ChannelAccount.id).where(
                ChannelAccount.type == data.type.value, ChannelAccount.external_id == external_id
            )
        )
        if clash:
            raise Conflict(f"A {data.type.value} account with id {external_id} is already connected")
        account = ChannelAccount(
            type=data.type.value,
            name=data.name,
            api_base_url=str(data.api_base_url).rstrip("/"),
            external_id=external_id,
            config=config,
            secrets_sealed=box.seal(sealed),
            is_active=True,
        )
        if data.type == ChannelType.whatsapp:
            account.senders = [
                ChannelSender(
                    external_id=external_id,
                    phone_number=str(config.get("display_phone_number") or ""),
                    display_name=data.name,
                    is_primary=True,
                )
            ]
        else:
            account.senders = []
        session.add(account)
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="channel_account.create",
            target_type="channel_account",
            target_id=account.id,
            changes={"type": account.type, "name": account.name, "external_id": external_id},
        )
        return account

    async def update(
        self,
        session: AsyncSession,
        *,
        actor: Principal | None,
        box: SecretBox,
        account_id: uuid.UUID,
        data: ChannelAccountUpdate,
    ) -> ChannelAccount:
        account = await self.get(session, account_id)
        changes: dict[str, Any] = {}
        if data.name is not None and data.name != account.name:
            changes["name"] = {"from": account.name, "to": data.name}
            account.name = data.name
        if data.api_base_url is not None:
            url = str(data.api_base_url).rstrip("/")
            if url != account.api_base_url:
                changes["api_base_url"] = {"from": account.api_base_url, "to": url}
                account.api_base_url = url
        if data.is_active is not None and data.is_active != account.is_active:
            changes["is_active"] = {"from": account.is_active, "to": data.is_active}
            account.is_active = data.is_active
        if data.credentials:
            merged = {**account.config, **box.open(account.secrets_sealed), **data.credentials}
            config, sealed = _validate(ChannelType(account.type), merged)
            new_external = str(config.get(EXTERNAL_ID_FIELD[ChannelType(account.type)], ""))
            if new_external != account.external_id:
                raise Conflict("The platform id of an account cannot change; connect a new account instead")
            changes["credentials"] = sorted(data.credentials)  # names only: values are secret
            account.config = config
            account.secrets_sealed = box.seal(sealed)
        if changes:
            await session.flush()
            await audit.record(
                session,
                actor=actor,
                action="channel_account.update",
                target_type="channel_account",
                target_id=account.id,
                changes=changes,
            )
        return account

    async def add_sender(
        self, session: AsyncSession, *, actor: Principal | None, account_id: uuid.UUID, data: SenderCreate
    ) -> ChannelSender:
        account = await self.get(session, account_id)
        if account.type != ChannelType.whatsapp:
            raise UnprocessableEntity("Only WhatsApp accounts have several sending numbers")
        if any(s.external_id == data.external_id for s in account.senders):
            raise Conflict(f"Number {data.external_id} is already a sender of this account")
        sender = ChannelSender(
            account_id=account.id,
            external_id=data.external_id,
            phone_number=data.phone_number,
            display_name=data.display_name,
            is_primary=False,
        )
        session.add(sender)
        await session.flush()
        if data.is_primary:
            await self.make_primary(session, actor=None, account_id=account.id, sender_id=sender.id)
        await audit.record(
            session,
            actor=actor,
            action="channel_sender.create",
            target_type="channel_account",
            target_id=account.id,
            changes={"external_id": data.external_id, "primary": data.is_primary},
        )
        return sender

    async def make_primary(
        self, session: AsyncSession, *, actor: Principal | None, account_id: uuid.UUID, sender_id: uuid.UUID
    ) -> None:
        senders = list(
            (await session.scalars(select(ChannelSender).where(ChannelSender.account_id == account_id))).all()
        )
        if sender_id not in {s.id for s in senders}:
            raise NotFound("Sender not found")
        for sender in senders:
            sender.is_primary = sender.id == sender_id
        await session.flush()
        if actor is not None:
            await audit.record(
                session,
                actor=actor,
                action="channel_sender.primary",
                target_type="channel_account",
                target_id=account_id,
                changes={"sender_id": str(sender_id)},
            )

    def read(self, account: ChannelAccount, *, box: SecretBox, base_url: str) -> ChannelAccountRead:
        secrets = box.open(account.secrets_sealed)
        return ChannelAccountRead(
            id=account.id,
            type=ChannelType(account.type),
            name=account.name,
            api_base_url=account.api_base_url,
            external_id=account.external_id,
            is_active=account.is_active,
            config=account.config,
            secrets={k: mask(v) for k, v in secrets.items()},
            webhook_url=webhook_url(base_url, account),
            senders=[SenderRead.model_validate(s) for s in account.senders],
            created_at=account.created_at,
        )

    def context(self, account: ChannelAccount, *, box: SecretBox) -> AccountContext:
        return AccountContext(
            account_id=str(account.id),
            external_id=account.external_id,
            api_base_url=account.api_base_url,
            config=dict(account.config),
            secrets=box.open(account.secrets_sealed),
        )

    def adapter(
        self, account: ChannelAccount, *, box: SecretBox, http: httpx.AsyncClient, tokens: TokenStore
    ) -> ChannelAdapter:
        cls = adapter_class(account.type)
        return cls(self.context(account, box=box), http, tokens)


channel_account = ChannelAccountService()
