"""Urlencoded parameters: frontauth's parser and redirect encoder against the standard library's.

``frontauth.params`` splits query strings and form bodies itself and decodes
only the parts that need it. These tests hold it to ``urllib.parse.parse_qsl``
with the options frontauth used before (blank values kept, strict UTF-8,
at most 100 fields), on fixed cases and on generated text.
"""

from __future__ import annotations

import random
import urllib.parse

import pytest

from frontauth.errors import InvalidRequest
from frontauth.params import MAX_PARAMETERS, _parse, split_pairs
from frontauth.responses import redirect_with_params


def reference(text: str) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_PARAMETERS)


def outcome(parse, text: str) -> tuple[str, object]:
    try:
        return "pairs", parse(text)
    except UnicodeDecodeError:
        return "bad utf-8", None
    except ValueError:
        return "too many fields", None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a=1",
        "a=1&b=2",
        "a",
        "a=",
        "=1",
        "&&a=1&&",
        "a=1=2",
        "a+b=c+d",
        "a%20b=c%2Bd",
        "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb%3Fx%3D1",
        "name=%C3%A9t%C3%A9",
        "name=caf\u00e9",
        "a=%",
        "a=%2",
        "a=%ZZ",
        "a=%00",
        "a=%FF",
        "a=%C3",
        "%FF=1",
        "a=1;b=2",
    ],
)
def test_parse_matches_parse_qsl(text: str) -> None:
    assert outcome(_parse, text) == outcome(reference, text)


def test_parse_matches_parse_qsl_on_generated_text() -> None:
    pieces = ["a", "b", "=", "&", "%", "%2", "%41", "%C3%A9", "%ZZ", "%FF", "+", "%2B", "%26", "%3D", " ", "\u00e9", "\x00"]
    generator = random.Random(20261204)
    for _ in range(20_000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 12)))
        assert outcome(_parse, text) == outcome(reference, text), text


@pytest.mark.parametrize("fields", [MAX_PARAMETERS - 1, MAX_PARAMETERS, MAX_PARAMETERS + 1])
def test_parse_field_limit(fields: int) -> None:
    text = "&".join(f"p{i}=1" for i in range(fields))
    assert outcome(_parse, text) == outcome(reference, text)


def test_split_pairs_rejects_bad_utf8() -> None:
    with pytest.raises(InvalidRequest) as caught:
        split_pairs("state=%FF")
    assert caught.value.description == "malformed parameters"


def test_split_pairs_rejects_too_many_fields() -> None:
    with pytest.raises(InvalidRequest) as caught:
        split_pairs("&".join(f"p{i}=1" for i in range(MAX_PARAMETERS + 1)))
    assert caught.value.description == "malformed parameters"


def test_redirect_query_matches_urlencode() -> None:
    pieces = ["a", "Z", "0", "-", "_", ".", "~", " ", "%", "&", "=", "+", "/", ":", "?", "#", "\u00e9", "\u2028", ";", "'"]
    generator = random.Random(4)
    for _ in range(5_000):
        params = {
            name: "".join(generator.choice(pieces) for _ in range(generator.randint(0, 20)))
            for name in ("code", "state", "iss", "error_description")
        }
        location = redirect_with_params("https://client.example/cb", params).headers["Location"]
        assert location == "https://client.example/cb?" + urllib.parse.urlencode(params), params


@pytest.mark.parametrize("text", ["state=\udcff", "state=%41\udcff", "st\udcffate=x", "state=a+\ud800"])
def test_split_pairs_rejects_lone_surrogate(text: str) -> None:
    """With AIOHTTP_NO_EXTENSIONS=1, aiohttp decodes query bytes that are not UTF-8 to lone surrogates."""
    with pytest.raises(InvalidRequest) as caught:
        split_pairs(text)
    assert caught.value.description == "malformed parameters"
