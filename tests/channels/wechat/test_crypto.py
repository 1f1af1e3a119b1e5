"""Signatures and WXBizMsgCrypt against Tencent's worked example and wechatpy's vectors."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring

from parley.channels.wechat.crypto import (
    CiphertextRejected,
    MalformedCiphertext,
    MessageCrypto,
    check_signature,
    decode_aes_key,
    pkcs7_pad,
    pkcs7_unpad,
    sha1_signature,
)
from tests.channels.wechat.helpers import VECTORS

# Tencent's 消息推送 worked example (PROTOCOLS.md 1.1 and 1.3).
TENCENT = {"token": "AAAAA", "aes_key": "A" * 43, "app_id": "wxba5fad812f8e6fb9"}


class TestSignature:
    def test_tencent_url_verification_example(self) -> None:
        assert (
            sha1_signature("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"
        )

    def test_tencent_push_signature_example(self) -> None:
        assert check_signature("AAAAA", "1714112445", "415670741", "6c5c811b55cc85e0e1b54100749188c20beb3f5d")

    @pytest.mark.parametrize("case", VECTORS["plain_signature"])
    def test_wechatpy_vectors(self, case: dict[str, object]) -> None:
        ok = check_signature(
            str(case["token"]), str(case["timestamp"]), str(case["nonce"]), str(case["signature"])
        )
        assert ok is case["valid"]

    def test_sorted_signer(self) -> None:
        vector = VECTORS["sorted_sha1_signer"]
        assert sha1_signature(*vector["parts"]) == vector["sha1_of_sorted_concat"]

    def test_missing_signature_is_invalid(self) -> None:
        assert not check_signature("AAAAA", "1", "2", None)
        assert not check_signature("AAAAA", "1", "2", "")


class TestTencentExample:
    def test_reply_encryption_reproduces_the_example(self) -> None:
        crypto = MessageCrypto(TENCENT["token"], TENCENT["aes_key"], TENCENT["app_id"])
        sealed = crypto.encrypt_reply(
            b'{"demo_resp":"good luck"}',
            nonce="415670741",
            timestamp="1713424427",
            random=b"707722b803182950",
        )
        assert sealed.encrypt == (
            "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
        )
        assert sealed.msg_signature == "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"

    def test_all_a_key_is_32_zero_bytes(self) -> None:
        assert decode_aes_key("A" * 43) == bytes(32)


class TestWechatpyVectors:
    crypto = VECTORS["crypto"]

    def _crypto(self) -> MessageCrypto:
        return MessageCrypto(self.crypto["token"], self.crypto["encoding_aes_key"], self.crypto["id"])

    def test_encrypt_reply(self) -> None:
        case = self.crypto["encrypt_reply"]
        sealed = self._crypto().encrypt_reply(
            case["reply_xml"].encode(),
            nonce=case["nonce"],
            timestamp=case["timestamp"],
            random=case["random"].encode(),
        )
        assert sealed.encrypt == case["expected_Encrypt"]
        assert sealed.msg_signature == case["expected_MsgSignature"]

    def test_decrypt_message(self) -> None:
        case = self.crypto["decrypt_message"]
        envelope = fromstring(case["body"])
        encrypt = envelope.findtext("Encrypt")
        crypto = self._crypto()
        assert crypto.check(case["timestamp"], case["nonce"], encrypt, case["msg_signature"])
        inner = fromstring(crypto.decrypt(encrypt))
        for name, value in case["expected_fields"].items():
            assert inner.findtext(name) == value

    def test_encrypted_echostr(self) -> None:
        case = self.crypto["encrypted_echostr_check"]
        crypto = self._crypto()
        assert crypto.check(case["timestamp"], case["nonce"], case["echostr"], case["msg_signature"])
        assert crypto.decrypt(case["echostr"]).decode() == case["decrypted"]
        assert not crypto.check(
            case["timestamp"], case["negative"]["nonce"], case["echostr"], case["msg_signature"]
        )


class TestCipher:
    def _crypto(self, app_id: str = "wx49f0ab532d5d035a") -> MessageCrypto:
        return MessageCrypto("token1", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", app_id)

    def test_round_trip_counts_utf8_bytes(self) -> None:
        crypto = self._crypto()
        message = "<xml><Content><![CDATA[你好，世界 🌏]]></Content></xml>".encode()
        assert crypto.decrypt(crypto.encrypt(message)) == message

    def test_full_block_padding_is_32_bytes_of_0x20(self) -> None:
        padded = pkcs7_pad(bytes(64))
        assert padded[64:] == b"\x20" * 32
        assert pkcs7_unpad(padded) == bytes(64)
        # 16 random + 4 length + 22 message + 22 appid = 64: a full extra block of padding.
        crypto = MessageCrypto("t0k", "A" * 43, "wx" + "0" * 16 + "abcd")
        message = b"x" * 22
        assert crypto.decrypt(crypto.encrypt(message)) == message

    def test_wrong_appid_is_rejected(self) -> None:
        ciphertext = self._crypto("wx1111111111111111").encrypt(b"<xml/>")
        with pytest.raises(CiphertextRejected, match="AppID"):
            self._crypto("wx2222222222222222").decrypt(ciphertext)

    def test_bad_padding_is_rejected(self) -> None:
        key = decode_aes_key("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR")
        plain = b"0123456789abcdef" + struct.pack(">I", 3) + b"abc" + b"wx49f0ab532d5d035a" + b"\x00" * 23
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        ciphertext = base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()
        with pytest.raises(CiphertextRejected, match="padding"):
            self._crypto().decrypt(ciphertext)

    @pytest.mark.parametrize("value", ["not base64!!", base64.b64encode(b"short").decode(), ""])
    def test_not_a_ciphertext(self, value: str) -> None:
        with pytest.raises(MalformedCiphertext):
            self._crypto().decrypt(value)

    def test_random_prefix_makes_each_ciphertext_unique(self) -> None:
        crypto = self._crypto()
        assert crypto.encrypt(b"same") != crypto.encrypt(b"same")

    @pytest.mark.parametrize("key", ["short", "A" * 44])
    def test_key_must_be_43_chars(self, key: str) -> None:
        with pytest.raises(ValueError, match="43"):
            decode_aes_key(key)
