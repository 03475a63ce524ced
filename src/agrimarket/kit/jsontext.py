"""JSON text in and out on the hot paths, by orjson: every push's body, every order stored, every log line.

The standard library's ``json`` cost a few percent of the server's CPU under a burst of pushes (encoding raw orders
for their JSON columns, decoding push bodies, rendering log lines); orjson does the same work several times faster.
What it writes is what ``json.dumps(value, default=str)`` would mean, compactly: anything JSON has no type for (a
datetime, a date, a dataclass, a UUID) becomes its text. A value orjson refuses (an integer beyond 64 bits) goes to
the standard library instead; ``loads`` raises ``ValueError`` (``json.JSONDecodeError``) on bad input, as
``json.loads`` does.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
