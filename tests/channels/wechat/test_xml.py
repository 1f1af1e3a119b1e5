"""The expat tree builder gives what defusedxml's ElementTree gave, and refuses what it refused."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

import pytest
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from parley.channels.base import MalformedPayloadError
from parley.channels.wechat.xml import parse_body
from tests.channels.wechat.helpers import PAYLOADS


def _reference_value(element: Element) -> Any:
    """The tree builder that ran on defusedxml's ElementTree before the expat one replaced it."""
    if len(element) == 0:
        return element.text or ""
    tree: dict[str, Any] = {}
    for child in element:
        value = _reference_value(child)
        if child.tag in tree:
            existing = tree[child.tag]
            if isinstance(existing, list):
                existing.append(value)
            else:
                tree[child.tag] = [existing, value]
        else:
            tree[child.tag] = value
    return tree


def _reference(body: bytes) -> Any:
    root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    return root.tag, _reference_value(root)


SAMPLES = sorted((PAYLOADS / "xml").glob("*.xml"))

SHAPES = {
    "cdata and text": b"<xml><A><![CDATA[x]]></A><B>plain</B><C><![CDATA[a]]>b<![CDATA[c]]></C></xml>",
    "repeated tags": b"<xml><item><a>1</a></item><item><a>2</a></item><item><a>3</a></item></xml>",
    "empty leaves": b"<xml><A></A><B/><C>  </C></xml>",
    "mixed content keeps children": b"<xml>text<A>1</A>tail<B><C>2</C>more</B></xml>",
    "comments and instructions": b"<xml><A>a<!-- note -->b</A><?pi data?><B>c</B></xml>",
    "character references": b"<xml><A>&lt;&amp;&#20320;&#x597D;&gt;</A></xml>",
    "attributes ignored": b'<xml a="1"><A b="2">x</A></xml>',
    "namespaces": b'<xml xmlns:n="urn:n"><n:A>1</n:A><B xmlns="urn:d">2</B></xml>',
    "declaration and utf-8": '<?xml version="1.0" encoding="utf-8"?>\n<xml><A>你好</A></xml>'.encode(),
    "latin-1 declared": '<?xml version="1.0" encoding="ISO-8859-1"?><xml><A>café</A></xml>'.encode("latin-1"),
    "utf-16": "<xml><A>你好</A></xml>".encode("utf-16"),
    "deep": b"<xml>" + b"<a>" * 50 + b"x" + b"</a>" * 50 + b"</xml>",
    "whitespace around": b"  \n<xml>\n  <A>1</A>\n</xml>\n",
}


class TestSameTreeAsElementTree:
    @pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
    def test_every_sample(self, path) -> None:
        body = path.read_bytes()
        assert parse_body(body) == _reference(body)[1]

    @pytest.mark.parametrize("body", SHAPES.values(), ids=SHAPES.keys())
    def test_shapes(self, body: bytes) -> None:
        tag, value = _reference(body)
        assert tag == "xml"
        assert parse_body(body) == value


REFUSED = {
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<xml><Content>&lol2;</Content></xml>",
        "DTDForbidden",
    ),
    "external entity": (
        b'<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><A>&xxe;</A></xml>',
        "DTDForbidden",
    ),
    "external dtd": (b'<!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml><a>1</a></xml>', "DTDForbidden"),
    "undefined entity": (b"<xml><A>&nope;</A></xml>", "undefined entity"),
    "unclosed": (b"<xml><A>gh</xml>", "invalid XML: mismatched tag"),
    "junk after root": (b"<xml><A>1</A></xml><xml/>", "invalid XML: junk after document element"),
    "no element": (b"<?xml version='1.0'?>", "invalid XML: no element found"),
    "wrong root": (b"<html><A>1</A></html>", r"root element is <html>, expected <xml>"),
    "namespaced root": (b'<xml xmlns="urn:x"><A>1</A></xml>', r"root element is <\{urn:x\}xml>"),
    "root without elements": (b"<xml>text</xml>", "<xml> has no elements"),
}


class TestRefused:
    @pytest.mark.parametrize(("body", "message"), REFUSED.values(), ids=REFUSED.keys())
    def test_refused_with_the_reason(self, body: bytes, message: str) -> None:
        with pytest.raises(MalformedPayloadError, match=message):
            parse_body(body)

    @pytest.mark.parametrize(("body", "message"), REFUSED.values(), ids=REFUSED.keys())
    def test_element_tree_refused_them_too(self, body: bytes, message: str) -> None:
        try:
            tag, value = _reference(body)
        except (DefusedXmlException, SyntaxError):
            return
        assert tag != "xml" or not isinstance(value, dict)

    def test_forbidden_construct_names_match_defusedxml(self) -> None:
        with pytest.raises(MalformedPayloadError) as caught:
            parse_body(REFUSED["external entity"][0])
        with pytest.raises(DefusedXmlException) as reference:
            _reference(REFUSED["external entity"][0])
        assert caught.value.message == f"forbidden XML construct: {type(reference.value).__name__}"

    def test_entity_declaration_without_doctype_handler(self) -> None:
        # The DOCTYPE refusal comes first; each handler refuses on its own as well.
        from parley.channels.wechat import xml

        with pytest.raises(xml._Forbidden, match="EntitiesForbidden"):
            xml._ENTITIES_FORBIDDEN("e", 0, "v", None, None, None, None)
        with pytest.raises(xml._Forbidden, match="ExternalReferenceForbidden"):
            xml._EXTERNAL_FORBIDDEN("ctx", None, "file:///etc/passwd", None)
