"""Which column goes where, which column identifies a contact, and one row's validation.

A mapping is a list with one target per column: ``""`` (skip), a standard
field, ``attr:<key>``, ``tags``, ``wechat_openid`` or ``wechat_unionid``. The
key is the target that identifies a contact, so importing a file again finds
the same contacts: ``phone``, ``email``, ``wechat_unionid``, ``wechat_openid``
(per account) or ``attr:<key>`` (an external id such as a CRM customer number,
kept as an identity so that it is unique and found by index).

Every value is validated by :mod:`parley.contacts.fields`, the one validation
of contact values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from parley.contacts.fields import (
    STANDARD_FIELDS,
    FieldError,
    coerce_attribute,
    coerce_identifier,
    coerce_standard,
)
from parley.contacts.imports.reader import show
from parley.contacts.tags import parse_tag_names
from parley.models import AttributeDefinition, AttributeType, IdentityKind

TAGS = "tags"
OPENID = IdentityKind.wechat_openid
UNIONID = IdentityKind.wechat_unionid
EXTERNAL_ID = "external_id"  # identity kind for ``attr:<key>`` keys; the scope is the attribute key
ATTR = "attr:"
KEY_FIELDS = ("phone", "email", UNIONID, OPENID)
_KEYABLE_ATTRIBUTES = (AttributeType.text, AttributeType.number)

# Header words (lower case, spaces and punctuation removed) that suggest a target.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "display_name": (
        "name",
        "fullname",
        "displayname",
        "contact",
        "contactname",
        "nickname",
        "姓名",
        "名字",
        "昵称",
        "客户名称",
        "联系人",
    ),
    "phone": (
        "phone",
        "mobile",
        "mobilephone",
        "cell",
        "tel",
        "telephone",
        "phonenumber",
        "whatsapp",
        "手机",
        "手机号",
        "手机号码",
        "电话",
        "联系电话",
    ),
    "email": ("email", "emailaddress", "mail", "邮箱", "电子邮件", "电子邮箱"),
    "gender": ("gender", "sex", "性别"),
    "language": ("language", "lang", "locale", "语言"),
    "city": ("city", "town", "城市", "市"),
    "province": ("province", "state", "region", "省", "省份"),
    "country": ("country", "国家", "国家地区"),
    "avatar_url": ("avatar", "avatarurl", "photo", "picture", "头像"),
    "birthday": ("birthday", "birthdate", "dateofbirth", "dob", "生日", "出生日期"),
    TAGS: ("tags", "tag", "labels", "标签"),
    OPENID: ("openid", "wechatopenid", "微信openid"),
    UNIONID: ("unionid", "wechatunionid", "微信unionid"),
}


class MappingError(ValueError):
    """The mapping or key cannot work; the message says what to change."""


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-.:/()（）]+", "", text.strip().lower())


def guess_mapping(headers: list[str], definitions: list[AttributeDefinition]) -> list[str]:
    """A first mapping from the column names; every target at most once."""
    used: set[str] = set()
    result: list[str] = []
    for header in headers:
        word = _norm(header)
        target = ""
        for name, words in _SYNONYMS.items():
            if word in words or word == _norm(name):
                target = name
                break
        if not target:
            for definition in definitions:
                if word in (_norm(definition.key), _norm(definition.label)):
                    target = ATTR + definition.key
                    break
        if target in used:
            target = ""
        if target:
            used.add(target)
        result.append(target)
    return result


def guess_key(mapping: list[str]) -> str:
    for candidate in (OPENID, UNIONID, "phone", "email"):
        if candidate in mapping:
            return candidate
    return next((t for t in mapping if t.startswith(ATTR)), "")


class Identity(NamedTuple):
    """Which contact a value names. A tuple of strings because an import keeps one per row in
    a dict for the whole file: hashing it is C, and the garbage collector stops tracking a tuple
    of strings, where 100,000 dataclass instances were walked by every full collection."""

    kind: str
    scope: str
    value: str


@dataclass
class Row:
    """One validated row (or API item): only the values it sets; blanks leave a contact as it is."""

    number: int
    key: Identity
    standard: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)  # besides the key


@dataclass(frozen=True)
class Rejection:
    number: int
    column: str
    value: str
    reason: str


@dataclass
class Spec:
    """A mapping checked against the attribute definitions, ready to validate rows."""

    headers: list[str]
    mapping: list[str]
    key: str
    account_id: uuid.UUID | None
    definitions: dict[str, AttributeDefinition]
    plan: list[_Column] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.plan = _plan(self)

    @property
    def key_column(self) -> int:
        return self.mapping.index(self.key)

    def identity(self, target: str, value: str) -> Identity:
        if target == OPENID:
            return Identity(OPENID, str(self.account_id), value)
        if target.startswith(ATTR):
            return Identity(EXTERNAL_ID, target[len(ATTR) :], value)
        if target == "email":
            # Addresses compare case-insensitively in practice; the contact keeps the typed form.
            return Identity(IdentityKind.email, "", value.lower())
        return Identity(target, "", value)


def compile_spec(
    *,
    headers: list[str],
    mapping: list[str],
    key: str,
    account_id: uuid.UUID | None,
    definitions: list[AttributeDefinition],
    wechat_account_ids: set[uuid.UUID],
) -> Spec:
    """Checks a mapping; raises :class:`MappingError` with what to fix."""
    if len(mapping) != len(headers):
        raise MappingError(f"The mapping has {len(mapping)} entries for {len(headers)} columns")
    by_key = {d.key: d for d in definitions}
    seen: set[str] = set()
    for header, target in zip(headers, mapping, strict=True):
        if not target:
            continue
        if target in seen:
            raise MappingError(f"Two columns are mapped to {target!r}")
        seen.add(target)
        if target.startswith(ATTR):
            if target[len(ATTR) :] not in by_key:
                raise MappingError(f"Column {header!r}: there is no custom attribute {target[len(ATTR) :]!r}")
        elif target not in (*STANDARD_FIELDS, TAGS, OPENID, UNIONID):
            raise MappingError(f"Column {header!r}: {target!r} is not a contact field")
    if not key:
        raise MappingError("Choose the column that identifies a contact (the key)")
    if key.startswith(ATTR):
        definition = by_key.get(key[len(ATTR) :])
        if definition is None or definition.type not in _KEYABLE_ATTRIBUTES:
            raise MappingError("Only a text or number attribute can be the key")
    elif key not in KEY_FIELDS:
        raise MappingError(f"{key!r} cannot identify a contact")
    if key not in mapping:
        raise MappingError(f"The key {key!r} is not mapped to any column")
    if OPENID in mapping and (account_id is None or account_id not in wechat_account_ids):
        raise MappingError("OpenIDs belong to one WeChat account: choose which")
    return Spec(headers, mapping, key, account_id if OPENID in mapping else None, by_key)


@dataclass(frozen=True)
class _Column:
    index: int
    header: str
    target: str
    kind: str  # standard | attribute | tags | identity
    coerce: Callable[[Any], Any]
    name: str  # the standard field or the attribute key the value goes to
    is_key: bool
    also_identity: bool  # a phone, email, OpenID or UnionID that is not the key: attached as well
    says_nothing: Any  # besides blanks, the value that sets nothing: "unknown" for gender


_NOTHING = object()


def _plan(spec: Spec) -> list[_Column]:
    """One entry per mapped column with its validator bound, worked out once per file, not per row."""
    plan: list[_Column] = []
    for index, target in enumerate(spec.mapping):
        if not target:
            continue
        header = spec.headers[index]
        is_key = target == spec.key
        if target.startswith(ATTR):
            key = target[len(ATTR) :]
            coerce = partial(coerce_attribute, spec.definitions[key])
            plan.append(_Column(index, header, target, "attribute", coerce, key, is_key, False, _NOTHING))
        elif target == TAGS:
            plan.append(_Column(index, header, target, "tags", parse_tag_names, "", False, False, _NOTHING))
        elif target in (OPENID, UNIONID):
            coerce = partial(coerce_identifier, target)
            plan.append(_Column(index, header, target, "identity", coerce, "", is_key, not is_key, _NOTHING))
        else:
            coerce = partial(coerce_standard, target)
            also = not is_key and target in ("phone", "email")
            # An "unknown" gender says nothing either.
            nothing = "unknown" if target == "gender" else _NOTHING
            plan.append(_Column(index, header, target, "standard", coerce, target, is_key, also, nothing))
    return plan


def validate_row(spec: Spec, number: int, cells: list[Any]) -> Row | list[Rejection]:
    """The row's values, or one rejection per bad cell. Blank cells set nothing."""
    # Called for every row of a file: the values go straight into the row's dicts (thrown
    # away if a cell is rejected) rather than through a list sorted out afterwards.
    rejections: list[Rejection] = []
    standard: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    tags: list[str] = []
    identities: list[Identity] = []
    key_value: Any = None
    width = len(cells)
    for column in spec.plan:
        raw = cells[column.index] if column.index < width else None
        try:
            value = column.coerce(raw)
        except FieldError as exc:
            rejections.append(Rejection(number, column.header, show(raw)[:500], exc.message[:500]))
            continue
        # Blank cells leave the contact as it is.
        if value is None or value == "" or value == [] or value == column.says_nothing:
            continue
        if column.is_key:
            key_value = value
        kind = column.kind
        if kind == "standard":
            standard[column.name] = value
        elif kind == "attribute":
            attributes[column.name] = value
        elif kind == "tags":
            tags = value
        if column.also_identity:
            identities.append(spec.identity(column.target, value))
    if not rejections and key_value is None:
        rejections.append(
            Rejection(
                number, spec.headers[spec.key_column], "", "is empty, and this column identifies the contact"
            )
        )
    if rejections:
        return rejections
    return Row(
        number, spec.identity(spec.key, _identity_text(key_value)), standard, attributes, tags, identities
    )


def _identity_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
