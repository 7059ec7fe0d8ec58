"""frontauth.fastjson: orjson with the json module as the fallback."""

from __future__ import annotations

import json
import tracemalloc

from frontauth import fastjson

RECORD = {
    "client_id": "0f3c9a1e5b7d4c2a8e6f1b3d5a7c9e0f",
    "subject": "person@example.com",
    "scope": "mcp",
    "resource": "https://mcp.example.com/mcp",
    "family_id": "9b1d3f5a7c9e0b2d4f6a8c0e2b4d6f8a",
    "auth_time": 1764800000,
    "expires_at": 1767392000,
    "rotated": False,
}


def test_dumps_round_trips_a_record() -> None:
    assert fastjson.loads(fastjson.dumps(RECORD)) == RECORD


def test_dumps_output_is_compact_json() -> None:
    assert fastjson.dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


def test_dumps_falls_back_for_lone_surrogate() -> None:
    value = json.loads('{"client_name": "\\ud800"}')
    assert fastjson.loads(fastjson.dumps(value)) == value


def test_dumps_falls_back_for_large_integer() -> None:
    assert fastjson.loads(fastjson.dumps([2**70])) == [2**70]


def test_loads_reads_json_module_output() -> None:
    assert json.dumps([float("inf")]) == "[Infinity]"
    assert fastjson.loads(b"[Infinity]") == [float("inf")]


def test_dumps_result_holds_no_spare_buffer() -> None:
    # A stored record must cost about its length: the memory driver keeps it.
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        results = [fastjson.dumps(RECORD) for _ in range(200)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / len(results) < 2 * len(results[0]) + 100
