"""Photos encrypted at rest, each under its own data key (AES-256-GCM, `cryptography`).

`seal` encrypts a photo with a fresh random data key and returns the key wrapped by
the master key (AES key wrap, RFC 3394); the database keeps only the wrapped key.
`erase` deletes the file and the caller clears the wrapped key: without it the
ciphertext in any backup is unreadable, which is what makes withdrawal an erasure.
The storage key (a random file name) is bound into the ciphertext as associated
data, so a file swapped for another photo's file fails to decrypt.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

NONCE_BYTES = 12


class PhotoUnavailable(Exception):
    """The photo was erased, or its file or key does not decrypt."""


@dataclass(frozen=True)
class SealedPhoto:
    storage_key: str
    wrapped_key: bytes
    sha256: str


class PhotoVault:
    def __init__(self, root: Path, master_key: bytes):
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self.root = root
        self._master_key = master_key

    def seal(self, data: bytes) -> SealedPhoto:
        storage_key = secrets.token_hex(16)
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, data, storage_key.encode())
        self._write(storage_key, nonce + ciphertext)
        return SealedPhoto(
            storage_key=storage_key,
            wrapped_key=aes_key_wrap(self._master_key, data_key),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def open(self, storage_key: str | None, wrapped_key: bytes | None) -> bytes:
        if not storage_key or not wrapped_key:
            raise PhotoUnavailable("the photo has been erased")
        try:
            data_key = aes_key_unwrap(self._master_key, wrapped_key)
            blob = self._path(storage_key).read_bytes()
            return AESGCM(data_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], storage_key.encode())
        except (InvalidUnwrap, InvalidTag, FileNotFoundError) as exc:
            raise PhotoUnavailable("the photo cannot be decrypted") from exc

    def erase(self, storage_key: str | None) -> None:
        if storage_key:
            self._path(storage_key).unlink(missing_ok=True)

    def _path(self, storage_key: str) -> Path:
        if not storage_key.isalnum():
            raise PhotoUnavailable("not a storage key")
        return self.root / storage_key[:2] / storage_key

    def _write(self, storage_key: str, blob: bytes) -> None:
        path = self._path(storage_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".partial")
        with open(temporary, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
