"""JSON with exact numbers: every Decimal is written as a JSON number with its own digits, so
no price passes through a float on the way out (Alpaca's market data carries numbers, not
strings; orjson cannot write a Decimal)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson


def dumps(data: Any) -> bytes:
    """JSON text where every Decimal is written as a number with its exact digits."""
    parts: list[str] = []
    _write(data, parts)
    return "".join(parts).encode()


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a market-data number must be finite")
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(orjson.dumps(str(key)).decode())
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        out.append(orjson.dumps(value).decode())


def _number(value: Decimal) -> str:
    text = format(value, "f")
    return text if text not in ("-0",) else "0"


