"""PKCE helpers: S256 only, and values matched whole."""

from __future__ import annotations

import pytest

from frontauth import pkce
from frontauth.errors import InvalidGrant, InvalidRequest

VERIFIER = "a" * 43
CHALLENGE = pkce.s256(VERIFIER)


def test_challenge_with_trailing_newline_is_rejected():
    with pytest.raises(InvalidRequest) as raised:
        pkce.check_challenge(CHALLENGE + "\n", "S256")
    assert raised.value.description == "code_challenge must be 43 base64url characters (S256)"


def test_verifier_with_trailing_newline_is_malformed():
    with pytest.raises(InvalidGrant) as raised:
        pkce.check_verifier(VERIFIER + "\n", CHALLENGE)
    assert raised.value.description == "code_verifier must be 43 to 128 unreserved characters"


def test_matching_verifier_passes():
    assert pkce.check_challenge(CHALLENGE, "S256") == CHALLENGE
    pkce.check_verifier(VERIFIER, CHALLENGE)


@pytest.mark.parametrize("method", ["plain", "s256", "", None])
def test_methods_other_than_s256_are_rejected(method):
    with pytest.raises(InvalidRequest) as raised:
        pkce.check_challenge(CHALLENGE, method)
    assert raised.value.redirectable is True
