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
# A temporary password (made by an administrator or the CLI, `must_change_password`) stops working after this many days
# if it was never changed: an initial secret must not become the long-term password (ASVS 2.3.1).
TEMP_PASSWORD_DAYS = 7

# Passwords seen at the top of published leak statistics, including the ones popular in China (lower-case). Not a full
# breached-password list (see docs/security.md, 2.1.7): it only stops the most guessed ones that pass the rules below.
COMMON_PASSWORDS = frozenset({
    "12345678", "123456789", "1234567890", "12345678910", "123456789a", "87654321", "11111111", "88888888",
    "66666666", "00000000", "11223344", "12341234", "123123123", "147258369", "1qaz2wsx", "1q2w3e4r", "1q2w3e4r5t",
    "1qaz2wsx3edc", "qwertyui", "qwertyuiop", "qwerty123", "qwer1234", "asdfghjkl", "asdf1234", "zxcvbnm123",
    "password", "password1", "password123", "passw0rd", "p@ssw0rd", "p@ssword", "iloveyou", "abc12345",
    "abcd1234", "abc123456", "a1234567", "a12345678", "aa123456", "aa12345678", "qq123456", "woaini1314",
    "woaini520", "5201314520", "admin123", "admin888", "admin1234", "administrator", "root1234", "welcome1",
    "zhang123456", "wang123456", "li123456", "huang123456", "123456abc", "123456qq", "1234qwer", "qwe123456",
})


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
    if len(set(password)) < 4:  # no rule on which kinds of characters: only on too few different ones
        return "密码过于简单：不同的字符太少，请换一个更长、不易被猜到的密码（可以用一句话，空格和汉字都可以）"
    if password.lower() in COMMON_PASSWORDS:
        return "密码过于简单：这是最常被猜到的密码之一，请换一个只有您自己知道的密码"
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
