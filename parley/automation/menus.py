"""The WeChat custom menu of an account: validated draft, publication through the API, what a click does."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation.schemas import Reply
from parley.channels.base import ChannelError
from parley.exceptions import BadRequest, NotFound, ParleyError
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Menu

ButtonType = Literal[
    "click",
    "view",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
]
KEYED = frozenset(
    {
        "click",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
    }
)


class ButtonAction(BaseModel):
    """What Parley does when the button's event arrives: one of reply, flow, queue."""

    model_config = ConfigDict(extra="forbid")

    reply: Reply | None = None
    flow_id: uuid.UUID | None = None
    queue_id: uuid.UUID | None = None
    note: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one(self) -> ButtonAction:
        if sum(x is not None for x in (self.reply, self.flow_id, self.queue_id)) != 1:
            raise ValueError("an action is exactly one of reply, flow_id or queue_id")
        return self


class Button(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: ButtonType | None = None
    key: str | None = Field(default=None, max_length=128)
    url: str | None = Field(default=None, max_length=256)
    action: ButtonAction | None = None
    sub_button: list[Button] = Field(default_factory=list, max_length=5)

    def check(self, *, sub: bool) -> None:
        limit = 40 if sub else 16
        if len(self.name.encode()) > limit:
            raise ValueError(f"button name {self.name!r} is longer than {limit} bytes")
        if self.sub_button:
            if sub:
                raise ValueError("sub-buttons cannot have sub-buttons")
            for child in self.sub_button:
                child.check(sub=True)
            return
        if self.type is None:
            raise ValueError(f"button {self.name!r} needs a type or sub-buttons")
        if self.type == "view":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError(f"view button {self.name!r} needs an http(s) url")
        elif not self.key:
            raise ValueError(f"{self.type} button {self.name!r} needs a key")
        if self.action is not None and self.type not in KEYED:
            raise ValueError(f"button {self.name!r}: only buttons that send an event can have an action")


class MenuIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    buttons: list[Button] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _valid(self) -> MenuIn:
        keys: list[str] = []
        for button in self.buttons:
            button.check(sub=False)
            for leaf in button.sub_button or [button]:
                if leaf.key:
                    keys.append(leaf.key)
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"button keys must be unique: {', '.join(dupes)}")
        return self


def platform_menu(buttons: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of /cgi-bin/menu/create: our buttons without Parley's actions."""

    def strip(button: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in button.items() if k in ("name", "type", "key", "url") and v is not None}
        if button.get("sub_button"):
            out = {"name": button["name"], "sub_button": [strip(b) for b in button["sub_button"]]}
        return out

    return {"button": [strip(b) for b in buttons]}


async def get_menu(session: AsyncSession, account_id: uuid.UUID) -> Menu | None:
    return await session.scalar(select(Menu).where(Menu.account_id == account_id))


async def save_menu(session: AsyncSession, account_id: uuid.UUID, data: MenuIn) -> Menu:
    account = await session.get(ChannelAccount, account_id)
    if account is None:
        raise NotFound("No such channel account")
    if account.type != "wechat":
        raise BadRequest("Custom menus are a WeChat feature")
    menu = await get_menu(session, account_id)
    if menu is None:
        menu = Menu(id=uuid.uuid4(), account_id=account_id, buttons=[])
        session.add(menu)
    menu.buttons = [b.model_dump(mode="json", exclude_none=True) for b in data.buttons]
    menu.updated_at = utcnow()
    await session.flush()
    return menu


async def push_menu(adapter: Any, buttons: list[dict[str, Any]]) -> None:
    """Sends the menu to the platform (/cgi-bin/menu/create)."""
    try:
        await adapter.client.create_menu(platform_menu(buttons))
    except ChannelError as exc:
        raise ParleyError(f"The platform refused the menu: {exc.message}", status_code=502) from exc


async def mark_published(session: AsyncSession, account_id: uuid.UUID, buttons: list[dict[str, Any]]) -> Menu:
    """Records what the platform now shows; a click acts on the published version."""
    menu = await get_menu(session, account_id)
    if menu is None:
        raise NotFound("The menu was deleted while publishing")
    menu.published = buttons
    menu.published_at = utcnow()
    await session.flush()
    return menu


async def click_action(session: AsyncSession, account_id: uuid.UUID, key: str) -> ButtonAction | None:
    menu = await get_menu(session, account_id)
    if menu is None:
        return None
    for button in menu.published or menu.buttons:
        for leaf in button.get("sub_button") or [button]:
            if leaf.get("key") == key and leaf.get("action"):
                return ButtonAction.model_validate(leaf["action"])
    return None
