"""PKCE (RFC 7636), S256 only.

The plain method is refused: with it the verifier equals the challenge that the
authorization request exposes in the browser (RFC 7636 §7.2), and OAuth 2.1
requires S256 from every client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from frontauth.errors import InvalidGrant, InvalidRequest

# RFC 7636 §4.1: code_verifier = 43*128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# An S256 challenge is base64url(SHA-256) without padding: exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def check_challenge(code_challenge: str | None, method: str | None) -> str:
    """Validate the authorization request's challenge and return it.

    Raises:
        InvalidRequest: the challenge is missing, malformed, or its method is not S256.
    """
    if not code_challenge:
        raise InvalidRequest("code_challenge is required (PKCE, RFC 7636)", redirectable=True)
    if method != "S256":
        shown = "missing" if not method else "not supported"
        raise InvalidRequest(f"code_challenge_method is {shown}; only S256 is accepted", redirectable=True)
    if not _S256_CHALLENGE.fullmatch(code_challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters (S256)", redirectable=True)
    return code_challenge


def s256(code_verifier: str) -> str:
    """Return the S256 challenge of a verifier."""
    raw = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def check_verifier(code_verifier: str | None, code_challenge: str) -> None:
    """Check a token request's verifier against the stored challenge.

    Raises:
        InvalidRequest: the verifier is missing.
        InvalidGrant: the verifier is malformed or does not match (RFC 7636 §4.6).
    """
    if not code_verifier:
        raise InvalidRequest("code_verifier is required (PKCE, RFC 7636)")
    if not _VERIFIER.fullmatch(code_verifier):
        raise InvalidGrant("code_verifier must be 43 to 128 unreserved characters")
    if not hmac.compare_digest(s256(code_verifier), code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
