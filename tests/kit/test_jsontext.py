"""JSON text by orjson, meaning what the standard library's ``json.dumps(value, default=str)`` would."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest

from agrimarket.kit import jsontext


@dataclass
class _Point:
    x: int


def test_values_json_has_no_type_for_are_written_as_their_text_as_the_standard_library_does() -> None:
    when = datetime(2026, 12, 4, 7, 30, tzinfo=UTC)
    order_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {"at": when, "day": date(2026, 12, 4), "id": order_id, "point": _Point(1), "name": "Hạt điều"}

    written = jsontext.dumps(value)

    assert json.loads(written) == json.loads(json.dumps(value, default=str))
    assert json.loads(written)["at"] == "2026-12-04 07:30:00+00:00"
    assert "Hạt điều" in written  # Vietnamese kept as it is, not escaped


def test_keys_that_are_not_text_become_text() -> None:
    assert json.loads(jsontext.dumps({1: "one", 2: "two"})) == {"1": "one", "2": "two"}


def test_an_integer_beyond_64_bits_is_still_written() -> None:
    assert json.loads(jsontext.dumps({"big": 2**70})) == {"big": 2**70}


def test_reading_bad_json_raises_value_error_like_the_standard_library() -> None:
    assert jsontext.loads(b'{"code": 3, "data": {"ordersn": "A1"}}') == {"code": 3, "data": {"ordersn": "A1"}}
    with pytest.raises(ValueError):  # noqa: PT011 - the type json.loads raises, which callers catch
        jsontext.loads(b'{"code": 3, "data": ')
