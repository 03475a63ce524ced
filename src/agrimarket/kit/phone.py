"""Vietnamese mobile numbers, normalised to E.164 (+84…)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from agrimarket.errors import Invalid

_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
MESSAGE = "This is not a Vietnamese mobile number. Enter one like 0912 345 678."


def normalize_vn_mobile(raw: str, *, field: str = "phone") -> str:
    """``0912 345 678``, ``+84 912 345 678`` and ``84912345678`` all give ``+84912345678``."""
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.startswith("84") or (digits.startswith("84") and len(digits) == 11 and not text.startswith("0")):
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, "VN")
    except NumberParseException as exc:
        raise Invalid(MESSAGE, field=field) from exc
    if (
        number.country_code != 84
        or not phonenumbers.is_valid_number(number)
        or phonenumbers.number_type(number) not in _MOBILE
    ):
        raise Invalid(MESSAGE, field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
