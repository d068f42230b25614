"""Settings, read from the environment (prefix ZF_) and ./var/.

One instance per process: `get_settings()`. Tests build their own `Settings(...)` and pass it to `create_app`.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32


class UnsafeSettingsError(RuntimeError):
    """Raised in production mode when a setting is unsafe; the message says which and how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZF_", extra="ignore")

    var_dir: Path = Path("var")
    database_url: str = ""
    secret_key: str = ""
    timezone: str = "Asia/Shanghai"
    default_locale: str = "zh_CN"
    county_name: str = "振风县"
    county_code: str = "341000"
    production: bool = False
    cookie_secure: bool = False
    session_idle_minutes: int = Field(default=120, ge=5, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 14)
    # Password logins and portal PIN checks (app.auth.service.throttle): failures of one account (card) from one address
    # that lock that address out of it, and failures from one address (any accounts) that lock the address out,
    # within the window. Only the address that failed is refused.
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    # The longest a login (PIN check) waits before its password is checked when the account (card) failed lately
    # from other addresses: from the per-account number of such failures on, a second for each, at most this many
    # seconds (served before the request's transaction opens; 0: no wait).
    login_slow_max_seconds: int = Field(default=5, ge=0, le=30)
    log_json: bool = True
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=60 * 1024 * 1024, ge=1024)
    # slow clients: seconds allowed for a request's headers; the longest pause inside a body; the whole body
    header_timeout_seconds: float = Field(default=10.0, ge=0.5, le=300)
    body_timeout_seconds: float = Field(default=30.0, ge=0.5, le=3600)
    body_deadline_seconds: float = Field(default=600.0, ge=1, le=24 * 3600)
    # seconds an idle kept-alive connection stays open
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # Requests a worker serves at once (the others wait their turn in the worker, holding nothing), at most the
    # database connections it may open (app.db.POOL_CAPACITY); one that waits longer than queue_wait_seconds gets 503.
    max_inflight: int = Field(default=20, ge=1, le=20)
    queue_wait_seconds: float = Field(default=10.0, ge=0.1, le=300)
    # Of those, how many may be uploads still receiving their body (a body over 64 KB, which is not read before the
    # request takes its place: app.web.middleware.READ_AHEAD_BYTES); smaller bodies are read first and hold no place.
    max_uploads: int = Field(default=4, ge=1, le=20)
    # Connections one client address may hold open to a worker (0: no limit); an IPv6 client counts by its /64.
    # A trusted proxy's connections (FORWARDED_ALLOW_IPS) are not counted: behind nginx, nginx's limit_conn does it.
    max_connections_per_address: int = Field(default=20, ge=0, le=10_000)
    # the address printed under a notice's QR code (https://zf.example.gov.cn); empty: the address the page was opened at
    public_url: str = ""
    # black- and red-list records: years after a posting's period ends before its personal details are erased
    list_retention_years: int = Field(default=5, ge=1, le=30)

    @field_validator("county_code")
    @classmethod
    def _county_code(cls, v: str) -> str:
        if not (len(v) == 6 and v.isdigit()):
            raise ValueError("县的行政区划代码必须是 6 位数字，例如 341000")
        return v

    def model_post_init(self, __context: object) -> None:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'zhenfeng.db').as_posix()}"
        if not self.secret_key:
            self.secret_key = load_or_create_secret(self.var_dir)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def unsafe_reasons(self) -> list[str]:
        """What would make this configuration unsafe for a real deployment, in Chinese."""
        reasons: list[str] = []
        if len(self.secret_key) < MIN_SECRET_LENGTH:
            reasons.append(f"ZF_SECRET_KEY 太短：至少需要 {MIN_SECRET_LENGTH} 个字符"
                           "（可用 python -c \"import secrets; print(secrets.token_urlsafe(48))\" 生成）")
        if not self.cookie_secure:
            reasons.append("ZF_COOKIE_SECURE 未开启：生产环境必须经 HTTPS 访问，并设置 ZF_COOKIE_SECURE=true")
        if ":memory:" in self.database_url:
            reasons.append("ZF_DATABASE_URL 指向内存数据库：重启即丢失全部积分，请使用文件或 PostgreSQL")
        if self.is_sqlite and self.workers > 1:
            reasons.append("SQLite 只能由一个进程写入：ZF_WORKERS 必须为 1，多进程请改用 PostgreSQL")
        return reasons

    def check_safe(self) -> None:
        if self.production:
            reasons = self.unsafe_reasons()
            if reasons:
                raise UnsafeSettingsError("生产模式拒绝启动，请修正以下设置：\n- " + "\n- ".join(reasons))


def load_or_create_secret(var_dir: Path) -> str:
    """The secret kept in var/secret_key, generated on first use with mode 0600."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
