"""Password hashing with argon2id (argon2-cffi).

Owns hashing, verification and the rehash decision. Hashing costs tens of
milliseconds of CPU on purpose: callers in an event loop run it in a thread
(``asyncio.to_thread``). Must never log or return a password.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# RFC 9106's second recommended option (64 MiB, 3 passes) is argon2-cffi's default.
_HASHER = PasswordHasher()
# What an unknown username is checked against, so that a miss costs what a hit costs.
_DUMMY = _HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
