"""Password hashing (Argon2id via pwdlib) and random tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 0.1 s per login on a 2-core
# machine. Stored hashes carry their own parameters, so raising these later still verifies old hashes.
ARGON2_MEMORY_KIB = 19_456
ARGON2_TIME_COST = 2

_hasher = PasswordHash((Argon2Hasher(memory_cost=ARGON2_MEMORY_KIB, time_cost=ARGON2_TIME_COST, parallelism=1),))
# Verified when the login name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def set_hash_cost(memory_kib: int, time_cost: int) -> None:
    """Change the cost of new hashes (the test suite lowers it; production keeps the defaults above)."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHash((Argon2Hasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=1),))
    _DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # a malformed stored hash is a failed login, never a 500
        return False


def password_problem(password: str, login: str | None = None) -> str | None:
    """Why a new password is not acceptable, in Chinese; None when it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符"
    if len(password) > 128:
        return "密码不能超过 128 个字符"
    if login and password.lower() == login.lower():
        return "密码不能与登录名相同"
    if len(set(password)) < 4:
        return "密码过于简单，请混合使用字母、数字和符号"
    return None


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def generate_password() -> str:
    """A readable random password for demo and reset accounts (no 0/O/1/l confusion)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))
