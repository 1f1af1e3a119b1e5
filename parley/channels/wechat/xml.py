"""Hardened parsing of WeChat callback bodies and building of reply bodies.

Bodies are parsed with ``xml.parsers.expat`` directly, with the same three
refusals defusedxml makes (a DOCTYPE, an entity declaration, an external
reference: each raises at once), so billion-laughs and XXE payloads fail before
any expansion happens. defusedxml's ElementTree ran the pure-Python parser's
callbacks and built Elements only to turn them into dicts; the handlers here
build the dict tree straight from expat's events. The result is a plain tree of
``str`` leaves and ``dict`` branches; a tag that repeats under one parent becomes
a ``list``. A leaf's value is all its character data (text and CDATA, comments
and processing instructions dropped); an element with children keeps only the
children, as ElementTree's ``.text`` handling did.

The platform's current push guide also allows a JSON envelope (PROTOCOLS.md 1.0);
a body whose first non-space byte is ``{`` is read as JSON, and replies to a JSON
push are written as JSON with the same field names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, cast
from xml.parsers import expat

from parley.channels.base import MalformedPayloadError

MAX_BODY_BYTES = 1024 * 1024

Tree = dict[str, Any]


def is_json(body: bytes) -> bool:
    return body.lstrip()[:1] == b"{"


class _Forbidden(Exception):
    """A DTD, entity declaration or external reference: named as defusedxml names it."""


def _forbid(name: str) -> Any:
    def handler(*_args: Any) -> NoReturn:
        raise _Forbidden(name)

    return handler


_DTD_FORBIDDEN = _forbid("DTDForbidden")
_ENTITIES_FORBIDDEN = _forbid("EntitiesForbidden")
_EXTERNAL_FORBIDDEN = _forbid("ExternalReferenceForbidden")


class _TreeBuilder:
    """Builds the dict tree from expat's events; one per document."""

    __slots__ = ("_stack", "root_tag", "root_value")

    def __init__(self) -> None:
        self.root_tag: str | None = None
        self.root_value: Any = None
        # One entry per open element: its tag, its children (None until the first one), its text.
        self._stack: list[tuple[str, list[Tree | None], list[str]]] = []

    def start(self, name: str, _attributes: Any) -> None:
        stack = self._stack
        if stack:
            children = stack[-1][1]
            if children[0] is None:
                children[0] = {}
        elif self.root_tag is None:
            self.root_tag = _fixname(name)
        stack.append((_fixname(name), [None], []))

    def end(self, _name: str) -> None:
        tag, children, data = self._stack.pop()
        tree = children[0]
        value: Any = "".join(data) if tree is None else tree
        if not self._stack:
            self.root_value = value
            return
        # Not None: start() gave the parent its dict when this child opened.
        parent = cast(Tree, self._stack[-1][1][0])
        if tag in parent:
            existing = parent[tag]
            if isinstance(existing, list):
                existing.append(value)
            else:
                parent[tag] = [existing, value]
        else:
            parent[tag] = value

    def data(self, text: str) -> None:
        # Character data outside any element is only whitespace (expat refuses anything else).
        if self._stack:
            self._stack[-1][2].append(text)


def _fixname(name: str) -> str:
    # With "}" as namespace separator expat reports "uri}local"; ElementTree's tag is "{uri}local".
    return "{" + name if "}" in name else name


def _parse_xml(body: bytes) -> tuple[str | None, Any]:
    parser = expat.ParserCreate(None, "}")
    builder = _TreeBuilder()
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _DTD_FORBIDDEN
    parser.EntityDeclHandler = _ENTITIES_FORBIDDEN
    parser.UnparsedEntityDeclHandler = _ENTITIES_FORBIDDEN
    parser.ExternalEntityRefHandler = _EXTERNAL_FORBIDDEN
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(body, True)
    return builder.root_tag, builder.root_value


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
        root_tag, value = _parse_xml(body)
    except _Forbidden as exc:
        raise MalformedPayloadError(f"forbidden XML construct: {exc}") from exc
    except (expat.ExpatError, ValueError) as exc:
        raise MalformedPayloadError(f"invalid XML: {exc}") from exc
    if root_tag != "xml":
        raise MalformedPayloadError(f"root element is <{root_tag}>, expected <xml>")
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
