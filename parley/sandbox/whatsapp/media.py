"""Small, valid placeholder files for media a simulated user "sends" without picking a file."""

from __future__ import annotations

import struct
import zlib

PLACEHOLDER_MIME = {
    "image": "image/png",
    "sticker": "image/webp",
    "video": "video/mp4",
    "audio": "audio/ogg",
    "voice": "audio/ogg",
    "document": "application/pdf",
}


def png(width: int = 96, height: int = 96, rgb: tuple[int, int, int] = (37, 211, 102)) -> bytes:
    """A solid-colour PNG: enough for an agent console to show a thumbnail."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def placeholder(kind: str) -> tuple[bytes, str, str]:
    """Bytes, MIME type and file name of a stand-in file for a media message of this kind."""
    if kind == "image":
        return png(), "image/png", "photo.png"
    if kind == "document":
        body = b"%PDF-1.4\n% Parley WhatsApp sandbox placeholder\n%%EOF\n"
        return body, "application/pdf", "document.pdf"
    if kind == "sticker":
        return b"RIFF\x0c\x00\x00\x00WEBPVP8 ", "image/webp", "sticker.webp"
    if kind == "video":
        return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "video/mp4", "video.mp4"
    return b"OggS\x00\x02" + b"\x00" * 20, "audio/ogg; codecs=opus", "voice.ogg"
