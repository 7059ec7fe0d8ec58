"""Encryption of session and vault records at rest (AES-256-GCM).

The key is derived with HKDF-SHA256 from the server secret, with ``MACHINE_ID``
as the salt, so every instance that shares both can read what another wrote.
Each record is bound to its storage key through the associated data, so a
ciphertext copied under another key does not decrypt.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# First byte of every sealed record, so the format can change without guessing.
_VERSION = b"\x01"
_NONCE_BYTES = 12


def derive_key(secret: str, machine_id: str | None, purpose: bytes, length: int = 32) -> bytes:
    """Derive a key for one purpose from the server secret and MACHINE_ID (RFC 5869)."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=(machine_id or "").encode(),
        info=b"frontauth " + purpose,
    )
    return hkdf.derive(secret.encode())


class RecordCipher:
    """Seal and open records with AES-256-GCM under a derived key."""

    def __init__(self, secret: str, machine_id: str | None) -> None:
        self._aead = AESGCM(derive_key(secret, machine_id, b"record encryption v1"))

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt plaintext; the result carries a version byte and a random nonce."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes | None:
        """Decrypt a sealed record; None when it was sealed under another key or altered."""
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            return None
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], associated_data)
        except InvalidTag:
            return None
