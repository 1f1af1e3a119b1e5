"""Channel type → adapter class: an explicit map, no plugin discovery."""

from __future__ import annotations

from parley.channels.base import ChannelAdapter, ChannelType


def _load() -> dict[ChannelType, type[ChannelAdapter]]:
    from parley.channels.wechat.adapter import WeChatAdapter
    from parley.channels.whatsapp.adapter import WhatsAppAdapter

    return {ChannelType.wechat: WeChatAdapter, ChannelType.whatsapp: WhatsAppAdapter}


_ADAPTERS: dict[ChannelType, type[ChannelAdapter]] | None = None


def adapter_class(channel_type: ChannelType | str) -> type[ChannelAdapter]:
    global _ADAPTERS
    if _ADAPTERS is None:
        _ADAPTERS = _load()
    try:
        return _ADAPTERS[ChannelType(channel_type)]
    except (KeyError, ValueError) as exc:
        raise KeyError(f"no adapter for channel type {channel_type!r}") from exc


def supported_types() -> list[ChannelType]:
    return [ChannelType.wechat, ChannelType.whatsapp]
