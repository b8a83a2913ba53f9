"""Keys and encodings of the audit log: canonical JSON, hashes, signatures, data keys.

Three kinds of keys, all files in the audit directory (``$FEDHUB_STATE_DIR/audit``
by default), outside the database, created on first use with mode 0600 in a 0700
folder (by ``os.open`` modes, never ``chmod``-ed after writing):

- ``signing_key.pem``: Ed25519; signs checkpoints. ``signing_key.pub`` is the
  public half, safe to hand to an auditor (``fedhub audit public-key``).
- ``master.key``: 32 random bytes. Wraps the per-subject data keys stored in
  the database (so a database dump alone reveals no personal field), keys the
  subject lookup hash, and keys a MAC over each record hash (so someone with
  only database access cannot append or rewrite records even after the last
  checkpoint).
- per-subject data keys (AES-256-GCM), one per person or service named in
  events, stored wrapped in ``fedhub_audit_keys``; deleting one is erasure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedhub.accounts import make_private_dir, write_private

GENESIS = "0" * 64


# what json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
# builds on every call, built once
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode


def canonical(fields: dict[str, Any]) -> bytes:
    """The one byte encoding that is hashed and signed: sorted-key compact JSON, UTF-8.

    (``default=str``: a value JSON cannot hold, say a datetime in event
    details, is stored as its text, once, at append time.)"""
    return _CANONICAL(fields).encode()


def canonical_text(fields: dict[str, Any]) -> str:
    """:func:`canonical` as text (how ``details`` is stored)."""
    return _CANONICAL(fields)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_secret(path: Path, data: bytes) -> None:
    """Create the key file ``path`` (0600, in a 0700 folder) unless it exists."""
    make_private_dir(path.parent)
    tmp = write_private(path.with_name(f".{path.name}.{os.getpid()}.new"), data)
    try:
        os.link(tmp, path)  # fails if another process made the key first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def public_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify_signature(public: Ed25519PublicKey, payload: bytes, signature_hex: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature_hex), payload)
        return True
    except (InvalidSignature, ValueError):
        return False


class KeyRing:
    """The audit directory's keys (created on first use)."""

    def __init__(self, audit_dir: str | Path, *, create: bool = True):
        self.dir = Path(audit_dir)
        self.create = create
        self._signing: Ed25519PrivateKey | None = None
        self._master: bytes | None = None
        self._derived_keys: dict[bytes, bytes] = {}
        self._subject_hashes: dict[str, str] = {}
        self._unwrapped: dict[tuple[str, str], AESGCM] = {}

    # -- signing ---------------------------------------------------------------

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        if self._signing is None:
            path = self.dir / "signing_key.pem"
            if not path.exists():
                if not self.create:
                    raise FileNotFoundError(path)
                key = Ed25519PrivateKey.generate()
                _write_secret(
                    path,
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ),
                )
            self._signing = serialization.load_pem_private_key(path.read_bytes(), None)
            pub = self.dir / "signing_key.pub"
            if not pub.exists():  # public, but in the hub's private folder like the rest
                write_private(pub, self.public_pem())
        return self._signing

    def public_key(self) -> Ed25519PublicKey:
        pub = self.dir / "signing_key.pub"
        if self._signing is None and pub.exists():
            return load_public_key(pub.read_bytes())
        return self.signing_key.public_key()

    def public_pem(self) -> bytes:
        return self.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, payload: bytes) -> str:
        return self.signing_key.sign(payload).hex()

    # -- the master key: wrapping, subject lookup, record MACs -----------------------

    @property
    def master(self) -> bytes | None:
        if self._master is None:
            path = self.dir / "master.key"
            if not path.exists():
                if not self.create:
                    return None
                _write_secret(path, os.urandom(32))
            self._master = path.read_bytes()
        return self._master

    def _derived(self, label: bytes) -> bytes:
        if label not in self._derived_keys:
            self._derived_keys[label] = hmac.digest(self.master, label, "sha256")
        return self._derived_keys[label]

    def subject_hash(self, subject: str) -> str:
        """A keyed hash of a username: finds their key without storing the name."""
        found = self._subject_hashes.get(subject)
        if found is None:
            if len(self._subject_hashes) > 100_000:
                self._subject_hashes.clear()
            found = hmac.digest(self._derived(b"subject"), subject.encode(), "sha256").hex()
            self._subject_hashes[subject] = found
        return found

    def cipher(self, wrapped: str, key_id: str) -> AESGCM:
        """The data key's cipher (cached by key id and wrapped value: a key row that
        is deleted is never looked up again, so the cache cannot outlive an erasure
        in the database it was read from)."""
        cache_key = (key_id, wrapped)
        found = self._unwrapped.get(cache_key)
        if found is None:
            if len(self._unwrapped) > 100_000:
                self._unwrapped.clear()
            found = self._unwrapped[cache_key] = AESGCM(self.unwrap(wrapped, key_id))
        return found

    def forget(self, key_id: str) -> None:
        for k in [k for k in self._unwrapped if k[0] == key_id]:
            del self._unwrapped[k]

    def mac_key(self) -> bytes | None:
        return self._derived(b"record-mac") if self.master is not None else None

    def wrap(self, data_key: bytes, key_id: str) -> str:
        nonce = os.urandom(12)
        ct = AESGCM(self._derived(b"wrap")).encrypt(nonce, data_key, key_id.encode())
        return base64.b64encode(nonce + ct).decode()

    def unwrap(self, wrapped: str, key_id: str) -> bytes:
        raw = base64.b64decode(wrapped)
        return AESGCM(self._derived(b"wrap")).decrypt(raw[:12], raw[12:], key_id.encode())


def record_mac(mac_key: bytes, record_hash: str) -> str:
    return hmac.digest(mac_key, record_hash.encode(), "sha256").hex()


def record_mac_function(mac_key: bytes):
    """``record_mac`` with ``mac_key`` bound, for one MAC per record in a loop: HMAC's
    padded inner and outer key blocks are hashed once and copied (RFC 2104), which
    takes less than half the time of a fresh ``hmac.digest`` per record."""
    key = mac_key if len(mac_key) <= 64 else hashlib.sha256(mac_key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def mac(record_hash: str) -> str:
        i = inner.copy()
        i.update(record_hash.encode())
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()

    return mac


def seal(aead: AESGCM, fields: dict[str, Any], aad: bytes) -> str:
    """Encrypt personal fields (AES-256-GCM, random nonce, the event id as AAD)."""
    return seal_bytes(aead, canonical(fields), aad)


def seal_bytes(aead: AESGCM, plaintext: bytes, aad: bytes) -> str:
    """:func:`seal` of fields already encoded with :func:`canonical`."""
    nonce = os.urandom(12)
    ct = aead.encrypt(nonce, plaintext, aad)
    return base64.b64encode(nonce + ct).decode()


def unseal(aead: AESGCM, sealed: str, aad: bytes) -> dict[str, Any] | None:
    try:
        raw = base64.b64decode(sealed)
        return json.loads(aead.decrypt(raw[:12], raw[12:], aad))
    except (InvalidTag, ValueError):
        return None
