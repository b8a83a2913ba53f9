"""Password hashing (argon2id via argon2-cffi) and TOTP (pyotp; secrets sealed by ``totp``)."""

from __future__ import annotations

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fedhub.tenancy import totp as totp_secrets

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str, issuer: str = "fedhub") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def verify_totp(
    secret: str, code: str, *, last_counter: int | None = None, now=None, box=None
) -> int | None:
    """Check a TOTP code (±1 step of clock drift) and refuse replays.

    ``secret`` is the value stored in ``fedhub_local_credentials``: sealed
    (``enc:v1:...``, opened with ``box``, by default the process's
    :func:`fedhub.tenancy.totp.default_box`) or, stored before encryption, clear.
    Returns the accepted time-step counter, to be stored so the same code
    cannot be used twice, or None when the code is wrong or replayed.
    """
    code = (code or "").strip().replace(" ", "")
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(totp_secrets.reveal(secret, box))
    import time

    t = now if now is not None else time.time()
    current = int(t // totp.interval)
    for counter in (current, current - 1, current + 1):
        if last_counter is not None and counter <= last_counter:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(counter), code):
            return counter
    return None
