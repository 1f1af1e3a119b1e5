"""Validation of contact values, shared by the profile form, the API and import.

Every function takes what a person typed (or a spreadsheet cell held) and returns
the value to store, or raises :class:`FieldError` with a message fit to show that
person. Nothing here touches the database, so one definition list can validate a
100,000-row import without a query per row.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from parley.models.contact import AttributeDefinition, AttributeType

STANDARD_FIELDS = (
    "display_name",
    "phone",
    "email",
    "gender",
    "language",
    "city",
    "province",
    "country",
    "avatar_url",
    "birthday",
)
GENDERS = ("male", "female", "unknown")
_TRUE = {"true", "yes", "y", "1", "是", "对"}
_FALSE = {"false", "no", "n", "0", "否", "不"}
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_TEXT = 2000


class FieldError(ValueError):
    """A value that cannot be stored, with the reason in words a user understands."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def valid_attribute_key(key: str) -> bool:
    return bool(_KEY.match(key))


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def parse_date(field: str, raw: Any) -> date:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    text = str(raw).strip()
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise FieldError(field, f"{text!r} is not a date (use YYYY-MM-DD)") from None
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日"):
        try:
            return datetime.strptime(text, fmt).date()  # noqa: DTZ007 - a calendar date, no time zone
        except ValueError:
            continue
    raise FieldError(field, f"{text!r} is not a date (use YYYY-MM-DD)")


_NOT_DIGIT = re.compile(r"\D")
_LETTER = re.compile(r"[^\W\d_]")
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")  # typed with a Chinese input method


def normalise_phone(field: str, raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # a spreadsheet cell holding the number as a number
    text = str(raw).strip()
    digits = _NOT_DIGIT.sub("", text).translate(_FULLWIDTH)
    if text.startswith(("00", "００")):
        digits = digits[2:]
    # E.164: at most 15 digits; fewer than 7 is not a reachable number anywhere.
    if not 7 <= len(digits) <= 15 or not digits.isascii() or _LETTER.search(text):
        raise FieldError(
            field, f"{text!r} is not a phone number (use the international form, e.g. +8613800138000)"
        )
    return f"+{digits}"


# Plain ASCII addresses are by far the most common; for them this is what validate_email
# returns (domain lower-cased), at a hundredth of its cost, which matters for a 100,000-row
# import. Anything else (quoted, IDNA, unusual TLDs) goes through validate_email itself.
_PLAIN_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$"
)


def _plain_email(text: str) -> str | None:
    match = _PLAIN_EMAIL.match(text)
    if match is None or len(text) > 254 or text.index("@") > 64:
        return None
    domain = match.group(1).lower()
    if "--" in domain or _special_use(domain):
        return None
    return f"{text[: text.index('@')]}@{domain}"


def _special_use(domain: str) -> bool:
    """Whether the domain is, or is under, one of email_validator's special-use names."""
    # The domain and each of its parents looked up in the (short) list: a third of the cost of
    # testing every name with endswith, on every address of an import. The list is read each
    # time because email_validator lets an application change it.
    while True:
        if domain in SPECIAL_USE_DOMAIN_NAMES:
            return True
        dot = domain.find(".")
        if dot < 0:
            return False
        domain = domain[dot + 1 :]


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def coerce_standard(field: str, raw: Any) -> Any:
    """The stored form of a standard profile field; blank clears it (None or "")."""
    if field not in STANDARD_FIELDS:
        raise FieldError(field, "is not a contact field")
    if _blank(raw):
        return None if field in ("phone", "email", "birthday") else ("unknown" if field == "gender" else "")
    if field == "phone":
        return normalise_phone(field, raw)
    if field == "email":
        fast = _plain_email(str(raw).strip())
        if fast is not None:
            return fast
        try:
            return validate_email(str(raw).strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise FieldError(field, str(exc)) from None
    if field == "birthday":
        born = parse_date(field, raw)
        if born > date.today() or born.year < 1900:  # noqa: DTZ011 - a calendar date
            raise FieldError(field, f"{born.isoformat()} is not a plausible birthday")
        return born
    if field == "gender":
        value = str(raw).strip().lower()
        value = {"m": "male", "f": "female", "男": "male", "女": "female", "1": "male", "2": "female"}.get(
            value, value
        )
        if value not in GENDERS:
            raise FieldError(field, f"{raw!r} is not one of {', '.join(GENDERS)}")
        return value
    text = str(raw).strip()
    limit = 1000 if field == "avatar_url" else 200
    if len(text) > limit:
        raise FieldError(field, f"is longer than {limit} characters")
    return text


_IDENTIFIER = re.compile(r"^[A-Za-z0-9_\-.:@+]{1,255}$")


def coerce_identifier(field: str, raw: Any) -> str | None:
    """A platform or external id (OpenID, UnionID, a CRM's customer number); blank is None.

    Spreadsheets turn long numbers into floats ("12345.0"); a whole float is read back as its digits.
    """
    if _blank(raw):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = str(raw).strip()
    if not _IDENTIFIER.match(text):
        raise FieldError(field, f"{text[:60]!r} is not an id (letters, digits and - _ . : @ + only)")
    return text


def coerce_attribute(definition: AttributeDefinition, raw: Any) -> Any:
    """The JSON value to store for a custom attribute; None means "not set"."""
    key = definition.key
    if _blank(raw) or raw == []:
        if definition.required:
            raise FieldError(key, "is required")
        return None
    kind = definition.type
    if kind == AttributeType.text:
        text = str(raw).strip()
        if len(text) > _MAX_TEXT:
            raise FieldError(key, f"is longer than {_MAX_TEXT} characters")
        return text
    if kind == AttributeType.number:
        if isinstance(raw, bool):
            raise FieldError(key, f"{raw!r} is not a number")
        try:
            number = Decimal(str(raw).strip().replace(",", ""))
        except InvalidOperation:
            raise FieldError(key, f"{raw!r} is not a number") from None
        if not number.is_finite():
            raise FieldError(key, f"{raw!r} is not a number")
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == AttributeType.date:
        return parse_date(key, raw).isoformat()
    if kind == AttributeType.boolean:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise FieldError(key, f"{raw!r} is not yes or no")
    if kind == AttributeType.choice:
        value = str(raw).strip()
        if value not in definition.options:
            raise FieldError(key, f"{value!r} is not one of: {', '.join(definition.options)}")
        return value
    if kind == AttributeType.multi_choice:
        items = raw if isinstance(raw, list) else re.split(r"[,;，；]", str(raw))
        values = [str(item).strip() for item in items if str(item).strip()]
        unknown = [value for value in values if value not in definition.options]
        if unknown:
            raise FieldError(
                key, f"{', '.join(map(repr, unknown))} not among: {', '.join(definition.options)}"
            )
        # Keep the administrator's order so that equal sets compare equal.
        return [option for option in definition.options if option in values]
    raise FieldError(key, f"has an unknown type {kind!r}")


__all__ = [
    "GENDERS",
    "STANDARD_FIELDS",
    "FieldError",
    "coerce_attribute",
    "coerce_identifier",
    "coerce_standard",
    "normalise_phone",
    "parse_date",
    "valid_attribute_key",
]
