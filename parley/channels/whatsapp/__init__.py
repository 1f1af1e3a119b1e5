"""WhatsApp Business Cloud API channel (PROTOCOLS.md Part 2)."""

from parley.channels.whatsapp.adapter import WhatsAppAdapter, build_message_payload, sign
from parley.channels.whatsapp.client import WhatsAppClient
from parley.channels.whatsapp.config import WhatsAppConfig
from parley.channels.whatsapp.window import check_can_send, is_window_open, window_closes_at

__all__ = [
    "WhatsAppAdapter",
    "WhatsAppClient",
    "WhatsAppConfig",
    "build_message_payload",
    "check_can_send",
    "is_window_open",
    "sign",
    "window_closes_at",
]
