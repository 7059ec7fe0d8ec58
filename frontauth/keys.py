"""Signing keys: loaded once at start-up, never generated on the request path.

The current signing key signs every access token. Public halves of earlier
signing keys (``keys.previous``) stay in the published JWKS so that tokens they
signed keep verifying during a rollover. With no key configured, the
development profile generates one and keeps it in ``server.state_dir``, so a
restart does not invalidate issued tokens. Other profiles refuse to start.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import typing

import attrs
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey, import_key

from frontauth.config import ConfigError, Settings

logger = logging.getLogger("frontauth.keys")

ALGORITHMS = ("ES256", "RS256", "EdDSA")

# JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

Key = typing.Union[ECKey, RSAKey, OKPKey]


@attrs.frozen
class SigningKeys:
    """The key that signs, and every public key that verifies."""

    signing_key: Key = attrs.field(repr=False)
    kid: str
    alg: str
    verify_keys: KeySet = attrs.field(repr=False)
    public_jwks: dict[str, list[dict[str, str]]]


def algorithm_for(key: Key) -> str:
    """Return the JWS algorithm a key signs with: ES256, RS256 or EdDSA."""
    if isinstance(key, ECKey):
        if key.curve_name != "P-256":
            raise ValueError(f"EC keys must use the P-256 curve, got {key.curve_name}")
        return "ES256"
    if isinstance(key, RSAKey):
        if key.raw_value.key_size < 2048:
            raise ValueError(f"RSA keys must have at least 2048 bits, got {key.raw_value.key_size}")
        return "RS256"
    if isinstance(key, OKPKey):
        if key.curve_name != "Ed25519":
            raise ValueError(f"OKP keys must use Ed25519, got {key.curve_name}")
        return "EdDSA"
    raise ValueError(f"unsupported key type {key.key_type}")


def generate(alg: str = "ES256", kid: str | None = None) -> dict[str, str]:
    """Generate a private signing JWK with a kid, alg and use.

    Args:
        alg: ES256 (EC P-256), RS256 (RSA 2048) or EdDSA (Ed25519).
        kid: the key id; defaults to the key's RFC 7638 thumbprint.

    Returns:
        The private JWK as a dict.
    """
    key: Key
    if alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    elif alg == "RS256":
        key = RSAKey.generate_key(2048, private=True)
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", private=True)
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; expected one of {', '.join(ALGORITHMS)}")
    jwk = key.as_dict(private=True)
    jwk["kid"] = kid or key.thumbprint()
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


def load_from_jwk(jwk: dict[str, typing.Any]) -> Key:
    """Import a JWK dict as a joserfc key."""
    return import_key(jwk)  # type: ignore[return-value]


def public_half(jwk: dict[str, str]) -> dict[str, str]:
    """Return the JWK without its private members."""
    return {name: value for name, value in jwk.items() if name not in PRIVATE_MEMBERS}


def _parse_jwk(text: str, setting: str, source: str | None) -> dict[str, typing.Any]:
    try:
        jwk = json.loads(text)
    except ValueError:
        raise ConfigError(setting, source, "expected a JWK as a JSON object; the value is not valid JSON") from None
    if not isinstance(jwk, dict) or "kty" not in jwk:
        raise ConfigError(setting, source, "expected a JWK (a JSON object with kty)")
    return jwk


def _import(jwk: dict[str, typing.Any], setting: str, source: str | None) -> tuple[Key, str]:
    try:
        key = import_key(jwk)
        alg = algorithm_for(key)
    except ConfigError:
        raise
    except Exception as exc:  # joserfc raises several types for malformed keys
        raise ConfigError(setting, source, f"invalid JWK: {type(exc).__name__}: {exc}") from None
    if "alg" in jwk and jwk["alg"] != alg:
        raise ConfigError(setting, source, f"JWK alg {jwk['alg']!r} does not match its key type ({alg})")
    return key, alg


def _dev_key(settings: Settings) -> dict[str, typing.Any]:
    """Load the development key from state_dir, generating it on first use."""
    path = os.path.join(settings.server.state_dir, "signing-key.json")
    try:
        with open(path, encoding="utf-8") as fh:
            jwk = _parse_jwk(fh.read(), "keys.sign_key", f"file {path}")
        logger.info("using the development signing key in %s", path)
        return jwk
    except FileNotFoundError:
        pass
    jwk = generate(settings.keys.algorithm)
    os.makedirs(settings.server.state_dir, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(jwk, fh)
    logger.warning(
        "generated a development signing key in %s; set keys.sign_key (JWT_SIGNING_KEY) outside development",
        path,
    )
    return jwk


def load(settings: Settings) -> SigningKeys:
    """Load the signing key and the previous public keys from settings.

    Raises:
        ConfigError: a key is malformed, a previous key carries private
            members, or no key is configured outside the development profile.
    """
    # Previous keys are checked first, so that a bad one stops start-up
    # before a development key is generated.
    previous_entries = _load_previous(settings)
    if settings.keys.sign_key is not None:
        jwk = _parse_jwk(settings.keys.sign_key, "keys.sign_key", settings.source_of("keys.sign_key"))
        setting = "keys.sign_key"
    elif settings.keys.sign_key_file is not None:
        path = settings.keys.sign_key_file
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError("keys.sign_key_file", settings.source_of("keys.sign_key_file"), f"cannot read {path!r}: {exc.strerror}") from None
        jwk = _parse_jwk(text, "keys.sign_key_file", f"file {path}")
        setting = "keys.sign_key_file"
    elif settings.profile == "development":
        jwk = _dev_key(settings)
        setting = "keys.sign_key"
    else:
        raise ConfigError("keys.sign_key", None, f"a signing key is required in the {settings.profile} profile")

    if not PRIVATE_MEMBERS & set(jwk):
        raise ConfigError(setting, settings.source_of(setting), "the signing key must be a private JWK")
    signing_key, alg = _import(jwk, setting, settings.source_of(setting))
    kid = jwk.get("kid") or signing_key.thumbprint()

    published = [_public_entry(public_half(jwk), kid, alg)]
    for entry in previous_entries:
        if entry["kid"] == kid:
            raise ConfigError("keys.previous", settings.source_of("keys.previous"), f"duplicate kid {kid!r}: it is the signing key's")
        published.append(entry)

    verify_keys = KeySet([import_key(entry) for entry in published])
    return SigningKeys(
        signing_key=signing_key,
        kid=kid,
        alg=alg,
        verify_keys=verify_keys,
        public_jwks={"keys": published},
    )


def _load_previous(settings: Settings) -> list[dict[str, typing.Any]]:
    """Parse keys.previous: public JWKs only, each with a distinct kid."""
    entries: list[dict[str, typing.Any]] = []
    source = settings.source_of("keys.previous")
    for i, text in enumerate(settings.keys.previous):
        path = f"keys.previous[{i}]"
        previous = _parse_jwk(text, path, source)
        leaked = sorted(PRIVATE_MEMBERS & set(previous))
        if leaked:
            raise ConfigError(
                path, source, f"previous keys are published in the JWKS and must be public; remove {', '.join(leaked)}"
            )
        key, alg = _import(previous, path, source)
        kid = previous.get("kid") or key.thumbprint()
        if any(entry["kid"] == kid for entry in entries):
            raise ConfigError(path, source, f"duplicate kid {kid!r}")
        entries.append(_public_entry(previous, kid, alg))
    return entries


def _public_entry(jwk: dict[str, typing.Any], kid: str, alg: str) -> dict[str, typing.Any]:
    entry = dict(jwk)
    entry.update(kid=kid, alg=alg, use="sig")
    return entry


def random_secret() -> str:
    """Return a new random server secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)
