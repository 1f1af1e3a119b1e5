"""Settings of one WeChat Official Account (PROTOCOLS.md 1.0)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from parley.channels.base import ChannelConfig

_APP_ID = re.compile(r"^wx[0-9a-fA-F]{16}$")
_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")
_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
_ORIGINAL_ID = re.compile(r"^gh_[0-9a-zA-Z]{1,32}$")


class EncryptionMode(StrEnum):
    plain = "plain"  # 明文
    compatible = "compatible"  # 兼容
    safe = "safe"  # 安全


class WeChatConfig(ChannelConfig):
    """What the console shows for an Official Account.

    ``app_id``, ``encryption_mode`` and ``original_id`` may be shown again; the
    three ``SecretStr`` fields are sealed at rest.
    """

    app_id: str = Field(description="AppID: wx + 16 hex characters")
    app_secret: SecretStr = Field(description="AppSecret, for access tokens and OAuth")
    token: SecretStr = Field(description="Callback signing Token, 3–32 letters and digits")
    encoding_aes_key: SecretStr | None = Field(
        default=None, description="EncodingAESKey, exactly 43 characters"
    )
    encryption_mode: EncryptionMode = EncryptionMode.safe
    original_id: str | None = Field(default=None, description="The account's gh_ id (ToUserName of pushes)")

    @field_validator("app_id")
    @classmethod
    def _check_app_id(cls, value: str) -> str:
        if not _APP_ID.match(value):
            raise ValueError("AppID is 'wx' followed by 16 hex characters")
        return value

    @field_validator("app_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("AppSecret is required")
        return value

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        if not _TOKEN.match(value.get_secret_value()):
            raise ValueError("Token is 3–32 letters and digits")
        return value

    @field_validator("encoding_aes_key")
    @classmethod
    def _check_aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not _AES_KEY.match(value.get_secret_value()):
            raise ValueError("EncodingAESKey is exactly 43 letters and digits")
        return value

    @field_validator("original_id")
    @classmethod
    def _check_original_id(cls, value: str | None) -> str | None:
        if value and not _ORIGINAL_ID.match(value):
            raise ValueError("original id looks like gh_ followed by letters and digits")
        return value or None

    @model_validator(mode="after")
    def _aes_key_when_encrypting(self) -> Self:
        if self.encryption_mode is not EncryptionMode.plain and self.encoding_aes_key is None:
            raise ValueError(f"EncodingAESKey is required in {self.encryption_mode.value} mode")
        return self
