"""Hardened parsing of WeChat callback bodies and building of reply bodies.

Bodies are parsed with defusedxml with DTDs, entity declarations and external
references all forbidden, so billion-laughs and XXE payloads fail before any
expansion happens. The result is a plain tree of ``str`` leaves and ``dict``
branches; a tag that repeats under one parent becomes a ``list``.

The platform's current push guide also allows a JSON envelope (PROTOCOLS.md 1.0);
a body whose first non-space byte is ``{`` is read as JSON, and replies to a JSON
push are written as JSON with the same field names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from parley.channels.base import MalformedPayloadError

MAX_BODY_BYTES = 1024 * 1024

Tree = dict[str, Any]


def is_json(body: bytes) -> bool:
    return body.lstrip()[:1] == b"{"


def _element_value(element: Element) -> Any:
    if len(element) == 0:
        # CDATA and bare text both arrive as .text; the parser has already decoded
        # character references once, which is all the platform ever applies.
        return element.text or ""
    tree: Tree = {}
    for child in element:
        value = _element_value(child)
        if child.tag in tree:
            existing = tree[child.tag]
            if isinstance(existing, list):
                existing.append(value)
            else:
                tree[child.tag] = [existing, value]
        else:
            tree[child.tag] = value
    return tree


def parse_body(body: bytes) -> Tree:
    """Parses a callback body (XML or JSON) into a tree; raises MalformedPayloadError on anything else."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedPayloadError("body larger than 1 MB")
    if not body.strip():
        raise MalformedPayloadError("empty body")
    if is_json(body):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayloadError(f"invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedPayloadError("JSON body is not an object")
        return {str(k): _json_leaf(v) for k, v in data.items()}
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedPayloadError(f"forbidden XML construct: {type(exc).__name__}") from exc
    except (ParseError, ValueError) as exc:
        raise MalformedPayloadError(f"invalid XML: {exc}") from exc
    if root.tag != "xml":
        raise MalformedPayloadError(f"root element is <{root.tag}>, expected <xml>")
    value = _element_value(root)
    if not isinstance(value, dict):
        raise MalformedPayloadError("<xml> has no elements")
    return value


def _json_leaf(value: Any) -> Any:
    # JSON pushes carry numbers as numbers; the rest of the adapter reads leaves as text.
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(k): _json_leaf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_leaf(v) for v in value]
    return value


def as_list(value: Any) -> list[Any]:
    """A repeated element as a list whether it appeared once or many times."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside one CDATA section; split it across two.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _xml_value(tag: str, value: Any) -> str:
    if isinstance(value, Mapping):
        inner = "".join(_xml_value(k, v) for k, v in value.items())
        return f"<{tag}>{inner}</{tag}>"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "".join(_xml_value(tag, item) for item in value)
    if isinstance(value, bool):
        return f"<{tag}>{int(value)}</{tag}>"
    if isinstance(value, int | float):
        return f"<{tag}>{value}</{tag}>"
    return f"<{tag}>{_cdata(str(value))}</{tag}>"


def build_xml(fields: Mapping[str, Any]) -> str:
    """Renders a reply tree the way the platform writes it: strings in CDATA, numbers bare.

    A list value repeats its tag (``{"item": [a, b]}`` gives two ``<item>``).
    """
    return "<xml>" + "".join(_xml_value(k, v) for k, v in fields.items()) + "</xml>"


def _json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_json_value(v) for v in value]
    return value


def build_json(fields: Mapping[str, Any]) -> str:
    return json.dumps(_json_value(fields), ensure_ascii=False, separators=(",", ":"))


def build_body(fields: Mapping[str, Any], *, as_json: bool) -> bytes:
    return (build_json(fields) if as_json else build_xml(fields)).encode()
