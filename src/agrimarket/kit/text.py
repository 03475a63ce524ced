"""Vietnamese text at the edges: NFC, trimmed, inner white space folded."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

_SPACES = re.compile(r"\s+")


def nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def clean_line(value: str) -> str:
    """One-line text (names, SKUs): NFC, no control characters, white space folded to single spaces."""
    value = nfc(value)
    if not value.isprintable():  # printable: no control or format character to drop (the common case, and fast)
        value = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch in "\t\n")
    return _SPACES.sub(" ", value).strip()


def clean_text(value: str) -> str:
    """Multi-line text (descriptions): NFC, line breaks kept, other control characters dropped."""
    value = nfc(value).replace("\r\n", "\n").replace("\r", "\n")
    if value.isprintable():
        return value.strip()
    return "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch in "\n\t").strip()


def fold(value: str) -> str:
    """A comparison key: lower case, accents removed (đ → d), so "Tồn kho" matches "ton kho"."""
    value = nfc(value).casefold().replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", value)
    return _SPACES.sub(" ", "".join(ch for ch in decomposed if not unicodedata.combining(ch))).strip()


Line = Annotated[str, AfterValidator(clean_line)]
# A search box: cleaned like any one-line text (a NUL or a control character is dropped, not sent to the database).
SearchText = Annotated[
    str, AfterValidator(clean_line), Query(max_length=200, description="Name or SKU; accents optional.")
]
Text = Annotated[str, AfterValidator(clean_text)]
