"""Password hashing with argon2id.

A login for an unknown email still verifies a password against a fixed hash, so the
two failures take the same time and answer the same.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024

_hasher = PasswordHasher()


@functools.cache
def _decoy_hash() -> str:
    return _hasher.hash("decoy password that no account has")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if `password` matches; an absent hash costs the same and is False."""
    try:
        return _hasher.verify(stored_hash or _decoy_hash(), password) and bool(
            stored_hash
        )
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None if it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"password too short: at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password too long: at most {MAX_LENGTH} characters"
    return None
