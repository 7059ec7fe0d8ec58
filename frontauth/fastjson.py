"""Compact JSON for the hot path: orjson, with the standard library as the fallback.

Records, token claims and token responses are encoded on every request.
orjson encodes and decodes them several times faster than the ``json``
module. Its output is compact JSON with non-ASCII characters written as
UTF-8, which every JSON reader accepts. orjson rejects a few values the
standard library encodes, such as a string holding a lone surrogate (which
``json.loads`` produces from a ``"\\ud800"`` escape). Those fall back to the
``json`` module, so no input that encoded before fails now.
"""

from __future__ import annotations

import json
import typing

import orjson

_FALLBACK = json.JSONEncoder(separators=(",", ":"))


def dumps(value: typing.Any) -> bytes:
    """Encode ``value`` as compact JSON bytes."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _FALLBACK.encode(value).encode("utf-8", "surrogatepass")
    # orjson 3.13 returns bytes that keep its whole output buffer, about 4 KiB
    # even for a 200-byte record (measured with tracemalloc). The memory
    # driver keeps every record it stores, so return an exact-size copy.
    return bytes(memoryview(encoded))


def loads(data: bytes | str) -> typing.Any:
    """Decode JSON bytes or text written by :func:`dumps` or by the ``json`` module."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # The json module writes NaN and Infinity, which orjson refuses, and
        # records written by earlier versions came from the json module.
        text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
        return json.loads(text)
