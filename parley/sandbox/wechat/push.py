"""Pushes to the account's server, as the platform sends them (PROTOCOLS.md 1.2–1.6).

A push is signed with the account's Token and, in compatible and safe mode,
encrypted and signed with ``msg_signature``. The platform gives the server 5 s
and makes 3 attempts in total, with the same body (so the same MsgId and
CreateTime) each time; a ``success`` or empty answer ends it without a reply.
A passive reply is checked the way the platform would, and anything it would
not show becomes the notice the user sees: "该公众号暂时无法提供服务，请稍后再试".
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from parley.channels.base import MalformedPayloadError
from parley.channels.wechat.crypto import MessageCrypto, WeChatCryptoError, sha1_signature
from parley.channels.wechat.xml import as_list, build_xml, parse_body
from parley.sandbox.wechat.state import Platform, SimAccount

UNAVAILABLE_NOTICE = "该公众号暂时无法提供服务，请稍后再试"
REPLY_TYPES = frozenset({"text", "image", "voice", "video", "music", "news", "transfer_customer_service"})


@dataclass
class Delivery:
    query: dict[str, str]
    body: bytes
    plain_xml: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False
    reply: dict[str, Any] | None = None
    reply_error: str | None = None
    raw_reply: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "body": self.body.decode(errors="replace"),
            "xml": self.plain_xml,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "reply": self.reply,
            "reply_error": self.reply_error,
            "raw_reply": self.raw_reply,
        }


def crypto_of(account: SimAccount) -> MessageCrypto | None:
    if not account.encoding_aes_key:
        return None
    return MessageCrypto(account.token, account.encoding_aes_key, account.app_id)


def sign_push(account: SimAccount, plain: str, *, openid: str, now: float) -> tuple[dict[str, str], bytes]:
    """The query and body of one push of the ``plain`` XML in the account's encryption mode."""
    timestamp = str(int(now))
    nonce = str(secrets.randbelow(10**10))
    query = {
        "signature": sha1_signature(account.token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": openid,
    }
    crypto = crypto_of(account)
    if account.encryption_mode == "plain" or crypto is None:
        return query, plain.encode()
    encrypt = crypto.encrypt(plain.encode())
    query |= {"encrypt_type": "aes", "msg_signature": crypto.sign(timestamp, nonce, encrypt)}
    if account.encryption_mode == "compatible":
        # Compatible mode: the plaintext elements and <Encrypt> side by side.
        body = plain.removesuffix("</xml>") + build_xml({"Encrypt": encrypt}).removeprefix("<xml>")
    else:
        body = build_xml({"ToUserName": account.original_id, "Encrypt": encrypt})
    return query, body.encode()


async def deliver(
    platform: Platform, http: httpx.AsyncClient, account: SimAccount, plain: str, *, openid: str
) -> Delivery:
    """Pushes ``plain`` (the inner XML) to the account's server, with the platform's retries."""
    query, body = sign_push(account, plain, openid=openid, now=platform.now())
    result = Delivery(query=query, body=body, plain_xml=plain)
    if not account.webhook_url:
        result.reply_error = "the account has no webhook_url"
        return result
    limits = account.limits
    platform.stats_webhook["pushes"] += 1
    for attempt in range(1, max(1, limits.webhook_attempts) + 1):
        if attempt > 1 and limits.retry_delay_s:
            await asyncio.sleep(limits.retry_delay_s)
        platform.stats_webhook["attempts"] += 1
        started = time.monotonic()
        record: dict[str, Any] = {"attempt": attempt, "status": None, "body": None, "error": None}
        try:
            response = await http.post(
                account.webhook_url,
                params=query,
                content=body,
                headers={"Content-Type": "text/xml"},
                timeout=limits.webhook_timeout_s,
            )
        except httpx.TimeoutException:
            record["error"] = f"no answer within {limits.webhook_timeout_s:g} s"
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        else:
            record["status"] = response.status_code
            record["body"] = response.text[:2000]
        record["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        result.attempts.append(record)
        if record["status"] is not None and 200 <= record["status"] < 300:
            result.delivered = True
            result.raw_reply = record["body"]
            _read_reply(account, response.content, plain, result)
            return result
        platform.stats_webhook["failed_attempts"] += 1
    platform.stats_webhook["undelivered"] += 1
    result.reply_error = UNAVAILABLE_NOTICE
    return result


def _read_reply(account: SimAccount, raw: bytes, plain: str, result: Delivery) -> None:
    text = raw.strip()
    if text in (b"", b"success"):
        return
    try:
        push = parse_body(plain.encode())
        tree = parse_body(text)
        if "Encrypt" in tree:
            crypto = crypto_of(account)
            if crypto is None:
                raise ValueError("encrypted reply but the account has no EncodingAESKey")
            encrypt = str(tree["Encrypt"])
            timestamp = str(tree.get("TimeStamp", ""))
            if not crypto.check(
                timestamp, str(tree.get("Nonce", "")), encrypt, str(tree.get("MsgSignature", ""))
            ):
                raise ValueError("reply MsgSignature does not verify")
            tree = parse_body(crypto.decrypt(encrypt))
        elif account.encryption_mode == "safe":
            raise ValueError("safe mode: the reply must be encrypted")
        result.reply = _check_reply(account, tree, push)
    except (MalformedPayloadError, WeChatCryptoError, ValueError, KeyError) as exc:
        result.reply_error = f"{UNAVAILABLE_NOTICE} ({exc})"


def _check_reply(account: SimAccount, tree: dict[str, Any], push: dict[str, Any]) -> dict[str, Any]:
    msg_type = str(tree.get("MsgType", ""))
    if msg_type not in REPLY_TYPES:
        raise ValueError(f"unknown reply MsgType {msg_type!r}")
    if tree.get("ToUserName") != push.get("FromUserName"):
        raise ValueError("reply ToUserName is not the user who wrote")
    if tree.get("FromUserName") != account.original_id:
        raise ValueError("reply FromUserName is not the account's original id")
    if not str(tree.get("CreateTime", "")).isdigit():
        raise ValueError("reply CreateTime is not an integer")
    reply: dict[str, Any] = {"type": msg_type}
    if msg_type == "text":
        reply["content"] = str(tree.get("Content", ""))
    elif msg_type in ("image", "voice", "video"):
        node = tree.get(msg_type.capitalize())
        if not isinstance(node, dict) or not node.get("MediaId"):
            raise ValueError(f"{msg_type} reply without MediaId")
        reply |= {
            "media_id": node["MediaId"],
            "title": node.get("Title"),
            "description": node.get("Description"),
        }
    elif msg_type == "music":
        node = tree.get("Music")
        if not isinstance(node, dict):
            raise ValueError("music reply without <Music>")
        reply |= {
            "title": node.get("Title"),
            "description": node.get("Description"),
            "music_url": node.get("MusicUrl"),
            "hq_music_url": node.get("HQMusicUrl"),
            "thumb_media_id": node.get("ThumbMediaId"),
        }
    elif msg_type == "news":
        articles_node = tree.get("Articles")
        items = as_list(articles_node.get("item")) if isinstance(articles_node, dict) else []
        count = str(tree.get("ArticleCount", ""))
        if not items or not count.isdigit() or int(count) != len(items):
            raise ValueError("news reply ArticleCount does not match its items")
        limit = 1 if push.get("MsgType") != "event" else 8
        if len(items) > limit:
            raise ValueError(f"news reply has {len(items)} articles; at most {limit} here")
        reply["articles"] = [
            {
                "title": i.get("Title", ""),
                "description": i.get("Description", ""),
                "picurl": i.get("PicUrl", ""),
                "url": i.get("Url", ""),
            }
            for i in items
            if isinstance(i, dict)
        ]
    return reply


async def verify_url(platform: Platform, http: httpx.AsyncClient, account: SimAccount) -> dict[str, Any]:
    """What the console does when the URL is saved: a signed GET that must echo ``echostr``."""
    if not account.webhook_url:
        return {"ok": False, "error": "the account has no webhook_url"}
    timestamp, nonce = str(int(platform.now())), str(secrets.randbelow(10**10))
    echostr = str(secrets.randbelow(10**19))
    query = {
        "signature": sha1_signature(account.token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }
    try:
        response = await http.get(account.webhook_url, params=query, timeout=account.limits.webhook_timeout_s)
    except httpx.HTTPError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ok = response.status_code == 200 and response.text == echostr
    return {"ok": ok, "status": response.status_code, "body": response.text[:500], "echostr": echostr}
