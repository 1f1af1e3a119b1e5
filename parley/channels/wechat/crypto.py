"""WeChat callback signatures and message encryption (WXBizMsgCrypt), PROTOCOLS.md 1.1–1.3.

The cipher is AES-256-CBC with the IV taken from the key and PKCS#7 padding
to a 32-byte block, done by hand because cipher libraries pad to 16. The
plaintext is ``random(16) ‖ len(4, big-endian) ‖ msg ‖ appid``.

Errors are split so the adapter can answer correctly: :class:`MalformedCiphertext`
is a body that cannot even be a ciphertext (bad base64, wrong length), while
:class:`CiphertextRejected` is a well-formed ciphertext that does not open to a
message for this account (bad padding, impossible length, foreign AppID), which
means it was not produced with this account's key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32
ENCODING_AES_KEY_LENGTH = 43


class WeChatCryptoError(ValueError):
    """Base of the crypto failures."""


class MalformedCiphertext(WeChatCryptoError):
    """The Encrypt value is not a ciphertext at all."""


class CiphertextRejected(WeChatCryptoError):
    """The ciphertext does not decrypt to a message for this account."""


def sha1_signature(*parts: str) -> str:
    """Lower-case hex SHA-1 of the parts sorted as strings and concatenated without separators."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def signature_matches(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())


def check_signature(token: str, timestamp: str, nonce: str, signature: str | None) -> bool:
    """The plain ``signature`` query parameter of every callback (GET and POST)."""
    return signature_matches(sha1_signature(token, timestamp, nonce), signature)


def decode_aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != ENCODING_AES_KEY_LENGTH:
        raise ValueError("EncodingAESKey must be exactly 43 characters")
    try:
        # validate=False on purpose: the console's keys may end in a character with
        # non-zero low bits (the official sample's does), which strict decoders reject.
        key = base64.b64decode(encoding_aes_key + "=")
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey does not decode to 32 bytes")
    return key


def pkcs7_pad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    n = block_size - (len(data) % block_size)
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    if not data:
        raise CiphertextRejected("empty plaintext")
    n = data[-1]
    if not 1 <= n <= block_size or n > len(data) or data[-n:] != bytes([n]) * n:
        raise CiphertextRejected("invalid padding")
    return data[:-n]


@dataclass(frozen=True)
class EncryptedReply:
    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str


class MessageCrypto:
    """Encrypts, decrypts and signs the callback envelope of one account."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        self.token = token
        self.app_id = app_id
        self._key = decode_aes_key(encoding_aes_key)
        # The IV is the key's first 16 bytes (PROTOCOLS.md), so one Cipher serves every message;
        # each call still gets its own encryptor or decryptor context.
        self._cipher_object = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def _cipher(self) -> Cipher[modes.CBC]:
        return self._cipher_object

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return sha1_signature(self.token, timestamp, nonce, encrypt)

    def check(self, timestamp: str, nonce: str, encrypt: str, msg_signature: str | None) -> bool:
        return signature_matches(self.sign(timestamp, nonce, encrypt), msg_signature)

    def encrypt(self, plaintext: bytes, *, random: bytes | None = None) -> str:
        prefix = os.urandom(16) if random is None else random
        if len(prefix) != 16:
            raise ValueError("random prefix must be 16 bytes")
        full = prefix + struct.pack(">I", len(plaintext)) + plaintext + self.app_id.encode()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(pkcs7_pad(full)) + encryptor.finalize()).decode()

    def decrypt(self, encrypt: str) -> bytes:
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedCiphertext("Encrypt is not base64") from exc
        if not raw or len(raw) % 16:
            raise MalformedCiphertext("Encrypt length is not a multiple of the AES block")
        decryptor = self._cipher().decryptor()
        full = pkcs7_unpad(decryptor.update(raw) + decryptor.finalize())
        if len(full) < 20:
            raise CiphertextRejected("plaintext too short")
        (length,) = struct.unpack(">I", full[16:20])
        if 20 + length > len(full):
            raise CiphertextRejected("message length exceeds the plaintext")
        message, app_id = full[20 : 20 + length], full[20 + length :]
        if not hmac.compare_digest(app_id, self.app_id.encode()):
            raise CiphertextRejected("ciphertext is for another AppID")
        return message

    def encrypt_reply(
        self,
        plaintext: bytes,
        *,
        nonce: str,
        timestamp: str | None = None,
        random: bytes | None = None,
    ) -> EncryptedReply:
        encrypt = self.encrypt(plaintext, random=random)
        ts = timestamp if timestamp is not None else str(int(time.time()))
        return EncryptedReply(
            encrypt=encrypt, msg_signature=self.sign(ts, nonce, encrypt), timestamp=ts, nonce=nonce
        )
