"""TOTP secrets encrypted at rest, with a key kept outside the database.

A copy of the database (a backup, a dump, a notebook that could open the SQLite file)
must not hand out every user's second factor. Secrets are stored as

    enc:v1:<key id>:<base64(nonce || AES-256-GCM ciphertext and tag)>

with a 32-byte key in a file: ``$FEDHUB_TOTP_KEY_FILE``, else
``$FEDHUB_STATE_DIR/keys/totp.key`` (``c.TotpSecretBox.key_file``). The file is created
on the first enrolment, 0600 in a 0700 folder, and never rewritten. The key id (8 hex
digits of the key's SHA-256) names the key that sealed a value, so a process given the
wrong file says so instead of refusing every code.

Rotation: put a new key on the file's first line and keep the old ones below it. The
first line seals, every line opens, and :func:`reseal` re-encrypts what an old key sealed
(``fedhub db reseal-totp``); then the old lines can go.

Values without the ``enc:`` prefix are secrets stored before encryption: they keep
working, and migration ``0008_totp_encrypted`` (``fedhub db upgrade``, or the hub when it
upgrades the database at start) seals them with the current key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, column, select, table, update
from traitlets import Unicode, default
from traitlets.config import Application, LoggingConfigurable

from fedhub.accounts import make_private_dir, write_private
from fedhub.errors import ConfigError

PREFIX = "enc:v1:"
_AAD = b"fedhub:totp-secret:v1"
_CREDENTIALS = table("fedhub_local_credentials", column("username"), column("totp_secret"))


def is_sealed(stored: str | None) -> bool:
    return bool(stored) and stored.startswith(PREFIX)


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class TotpSecretBox(LoggingConfigurable):
    """Seals and opens TOTP secrets with the key file's keys (the first line seals)."""

    key_file = Unicode(
        "",
        config=True,
        help="""File with the key that encrypts TOTP secrets in the database: base64 of
        32 random bytes per line; the first line encrypts, every line decrypts (rotation).
        Created (0600) on the first enrolment when missing. Keep it out of the database's
        backups and out of reach of the database's owner; without it no TOTP login works.
        Empty means ``$FEDHUB_TOTP_KEY_FILE``, else ``$FEDHUB_STATE_DIR/keys/totp.key``.

            c.TotpSecretBox.key_file = "/etc/fedhub/keys/totp.key"
        """,
    )

    @default("key_file")
    def _default_key_file(self):
        if os.environ.get("FEDHUB_TOTP_KEY_FILE"):
            return os.environ["FEDHUB_TOTP_KEY_FILE"]
        state = os.environ.get("FEDHUB_STATE_DIR", ".fedhub")
        return str(Path(state).resolve() / "keys" / "totp.key")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._keys: list[bytes] | None = None
        self._lock = threading.Lock()

    # -- the key file ------------------------------------------------------------

    def keys(self, create: bool = False) -> list[bytes]:
        """The file's keys, newest first; ``create``: make the file if it is missing."""
        with self._lock:
            if self._keys is None:
                path = Path(self.key_file)
                if not path.exists():
                    if not create:
                        raise ConfigError(
                            f"the TOTP key file {path} is missing: TOTP secrets cannot be"
                            " decrypted (restore it from the backup of the keys, or point"
                            " c.TotpSecretBox.key_file / $FEDHUB_TOTP_KEY_FILE at it)"
                        )
                    _create_key_file(path)
                self._keys = _read_keys(path)
            return self._keys

    # -- sealing -----------------------------------------------------------------

    def seal(self, secret: str) -> str:
        """The value to store for ``secret`` (encrypted with the current key)."""
        key = self.keys(create=True)[0]
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, secret.encode(), _AAD)
        return f"{PREFIX}{key_id(key)}:{base64.b64encode(nonce + sealed).decode()}"

    def reveal(self, stored: str) -> str:
        """The secret in a stored value; a value stored before encryption is returned as is."""
        if not is_sealed(stored):
            return stored
        kid, _, blob = stored.removeprefix(PREFIX).partition(":")
        by_id = {key_id(k): k for k in self.keys()}
        if kid not in by_id:
            raise ConfigError(
                f"a TOTP secret was encrypted with key {kid}, which is not in {self.key_file}"
                " (restore the key file that was in use, or add the old key as a line)"
            )
        try:
            raw = base64.b64decode(blob, validate=True)
            return AESGCM(by_id[kid]).decrypt(raw[:12], raw[12:], _AAD).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise ConfigError(
                f"a stored TOTP secret does not decrypt with key {kid} from {self.key_file}"
            ) from None

    def needs_reseal(self, stored: str | None) -> bool:
        """True for a clear secret, or one sealed with a key that is no longer the first."""
        if not stored:
            return False
        if not is_sealed(stored):
            return True
        return not stored.startswith(f"{PREFIX}{key_id(self.keys()[0])}:")


def _read_keys(path: Path) -> list[bytes]:
    keys = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            key = base64.b64decode(line.strip(), validate=True)
        except (ValueError, binascii.Error):
            key = b""
        if len(key) != 32:
            raise ConfigError(f"{path}, line {n}: not the base64 of a 32-byte key")
        keys.append(key)
    if not keys:
        raise ConfigError(f"{path} holds no key")
    return keys


def _create_key_file(path: Path) -> None:
    """A new key file, 0600 in a 0700 folder; if another process made one first, keep it."""
    make_private_dir(path.parent)
    line = base64.b64encode(os.urandom(32)).decode() + "\n"
    tmp = write_private(path.with_name(f".{path.name}.{os.getpid()}.new"), line)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


_boxes: dict[str, TotpSecretBox] = {}
_boxes_lock = threading.Lock()


def default_box() -> TotpSecretBox:
    """This process's box (one per key file path).

    Inside the hub, ``c.TotpSecretBox.key_file`` from its config file applies: the box
    takes the running application's config, so neither the authenticator nor the
    store has to pass it along. Elsewhere (the CLI) the environment decides.
    """
    config = Application.instance().config if Application.initialized() else None
    box = TotpSecretBox(config=config) if config is not None else TotpSecretBox()
    with _boxes_lock:
        return _boxes.setdefault(box.key_file, box)


def reveal(stored: str, box: TotpSecretBox | None = None) -> str:
    return (box or default_box()).reveal(stored)


def reseal(connection: Connection, box: TotpSecretBox | None = None) -> int:
    """Encrypt clear secrets and re-encrypt those of an old key; returns how many changed.

    Reads the key only when some value needs it, so a database without TOTP users
    never creates a key file.
    """
    rows = connection.execute(
        select(_CREDENTIALS.c.username, _CREDENTIALS.c.totp_secret).where(
            _CREDENTIALS.c.totp_secret.is_not(None)
        )
    ).all()
    if not rows:
        return 0
    box = box or default_box()
    changed = 0
    for username, stored in rows:
        if stored and (not is_sealed(stored) or box.needs_reseal(stored)):
            connection.execute(
                update(_CREDENTIALS)
                .where(_CREDENTIALS.c.username == username)
                .values(totp_secret=box.seal(box.reveal(stored)))
            )
            changed += 1
    return changed
