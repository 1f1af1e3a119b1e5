"""Settings of one WhatsApp Business account and the platform constants the adapter is built around.

A Parley WhatsApp channel account is one WhatsApp Business Account (WABA) with
one or more business phone numbers ("senders"). ``phone_number_id`` is the
primary sender: it is the account's ``external_id`` and the number used when an
outbound message names no other. Every webhook says which number it was for in
``value.metadata.phone_number_id``; the adapter copies that into
``InboundEvent.account_external_id`` so the inbox can tell the senders apart.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from parley.channels.base import ChannelConfig

DEFAULT_API_BASE_URL = "https://graph.facebook.com"
# PROTOCOLS.md 2.0: pin the Graph version in config. v25.0 is the newest the
# reference library knows; Graph versions live about two years.
DEFAULT_API_VERSION = "v25.0"
MIN_API_VERSION = 17

SECRET_FIELDS = ("access_token", "app_secret", "verify_token")

# PROTOCOLS.md 2.4 / 2.7.
CUSTOMER_SERVICE_WINDOW_HOURS = 24
DEFAULT_THROUGHPUT_PER_S = 80.0
# The messaging limit counts unique users reached outside a customer-service
# window in a moving 24 h, per business portfolio; it grows by tier.
MESSAGING_LIMIT_TIERS = (250, 2_000, 10_000, 100_000, None)  # None: unlimited
PAIR_RATE_INTERVAL_S = 6.0
WEBHOOK_ACK_DEADLINE_S = 3.0

API_VERSION_PATTERN = r"^v(\d+)\.0$"


class WhatsAppConfig(ChannelConfig):
    """What an operator enters to connect a WhatsApp Business account."""

    phone_number_id: str = Field(min_length=1, max_length=64, pattern=r"^\d+$")
    business_account_id: str = Field(min_length=1, max_length=64, pattern=r"^\d+$")
    access_token: SecretStr
    app_secret: SecretStr
    verify_token: SecretStr
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=API_VERSION_PATTERN)

    @field_validator("api_version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        match = re.match(API_VERSION_PATTERN, value)
        if match is None or int(match.group(1)) < MIN_API_VERSION:
            raise ValueError(
                f"Graph API version must be v{MIN_API_VERSION}.0 or newer, like {DEFAULT_API_VERSION}"
            )
        return value
