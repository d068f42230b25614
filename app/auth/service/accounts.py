"""Accounts, grants, sessions, login throttling and API tokens. No HTTP here: the web layer passes plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.models import ROLE_LABELS, ROLE_SCOPE_COLUMN, ApiToken, Role, RoleGrant, User, UserSession
from app.auth.permissions import STORE_BOUND, Perm, role_has
from app.auth.security import (
    TEMP_PASSWORD_DAYS,
    hash_password,
    new_token,
    password_problem,
    same,
    sha256_hex,
    verify_password,
)
from app.auth.service import throttle
from app.config import Settings
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.scope import Scope, ScopeFilter
from app.errors import Conflict, NotAuthenticated, NotFound, TooManyRequests, ValidationFailed, get_or_not_found
from app.households.models import Household
from app.org import service as org
from app.org.models import Store, Township, Village

LOGIN_RE = re.compile(r"^[a-z0-9_.\-]{3,40}$")
PHONE_RE = re.compile(r"^1\d{10}$")


# ---- principal ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GrantView:
    id: int
    role: Role
    township_id: int | None = None
    village_id: int | None = None
    store_id: int | None = None
    household_id: int | None = None
    label: str = ""
    served_village_ids: tuple[int, ...] = ()  # a store's grant: the other villages the store serves


@dataclass
class Principal:
    user_id: int
    login: str
    display_name: str
    grants: list[GrantView]
    session_id: int | None = None
    csrf_token: str | None = None
    via: str = "session"  # session | token
    large_font: bool = False
    locale: str | None = None
    must_change_password: bool = False
    request_id: str | None = None
    ip: str | None = None
    _filters: dict[Perm, ScopeFilter] = field(default_factory=dict)

    @property
    def roles(self) -> set[Role]:
        return {g.role for g in self.grants}

    def can(self, perm: Perm) -> bool:
        if perm in (Perm.PUBLIC, Perm.SIGNED_IN):
            return True
        return any(role_has(g.role, perm) for g in self.grants)

    def filter(self, perm: Perm) -> ScopeFilter:
        """The part of the tree this user reaches with `perm` (union over the grants that carry it)."""
        if perm in self._filters:
            return self._filters[perm]
        everything = False
        t: set[int] = set()
        v: set[int] = set()
        s: set[int] = set()
        h: set[int] = set()
        for g in self.grants:
            if not role_has(g.role, perm):
                continue
            if g.role is Role.COUNTY_ADMIN:
                everything = True
            if g.township_id is not None:
                t.add(g.township_id)
            if g.village_id is not None and g.role in (Role.VILLAGE_CLERK, Role.COMMITTEE_MEMBER):
                v.add(g.village_id)
            if g.store_id is not None:
                s.add(g.store_id)
                if g.village_id is not None and perm not in STORE_BOUND:  # a store clerk sees the store's village
                    v.add(g.village_id)
                    v.update(g.served_village_ids)  # and the other villages the store serves
            if g.household_id is not None:
                h.add(g.household_id)
        flt = ScopeFilter(everything, frozenset(t), frozenset(v), frozenset(s), frozenset(h))
        self._filters[perm] = flt
        return flt

    def covers(self, perm: Perm, scope: Scope) -> bool:
        return self.filter(perm).covers(scope)

    def actor(self) -> Actor:
        primary = self.grants[0] if len(self.grants) == 1 else None
        role = primary.role.value if primary else ",".join(sorted(r.value for r in self.roles)) or None
        return Actor(user_id=self.user_id, name=f"{self.display_name}({self.login})", role=role,
                     scope=primary.label if primary else None, request_id=self.request_id, ip=self.ip)


def _grant_views(session: Session, grants: list[RoleGrant]) -> list[GrantView]:
    views: list[GrantView] = []
    for g in grants:
        role = Role(g.role)
        label = ROLE_LABELS[role]
        village_id = g.village_id
        served: tuple[int, ...] = ()
        if g.township_id:
            t = session.get(Township, g.township_id)
            label += f" · {t.name if t else g.township_id}"
        if g.village_id:
            v = session.get(Village, g.village_id)
            label += f" · {v.name if v else g.village_id}"
        if g.store_id:
            facts = org.store_facts(session, g.store_id)  # loads the store too
            s = session.get(Store, g.store_id)
            label += f" · {s.name if s else g.store_id}"
            village_id = s.village_id if s else None
            served = facts.served[1:] if facts else ()
        if g.household_id:
            hh = session.get(Household, g.household_id)
            hv = session.get(Village, hh.village_id) if hh else None
            label += f" · {hv.name if hv else ''} 户号 {hh.number if hh else g.household_id}"
            village_id = hh.village_id if hh else None
        views.append(GrantView(id=g.id, role=role, township_id=g.township_id, village_id=village_id,
                               store_id=g.store_id, household_id=g.household_id, label=label,
                               served_village_ids=served))
    return views


def active_grants(session: Session, user_id: int) -> list[RoleGrant]:
    return list(session.execute(select(RoleGrant).where(RoleGrant.user_id == user_id, RoleGrant.revoked_at.is_(None))
                                .order_by(RoleGrant.id)).scalars())


def _principal(session: Session, user: User, grants: list[RoleGrant], **kw: object) -> Principal:
    return Principal(user_id=user.id, login=user.login, display_name=user.display_name,
                     grants=_grant_views(session, grants), large_font=user.large_font, locale=user.locale,
                     must_change_password=user.must_change_password, **kw)


# ---- users --------------------------------------------------------------------------------------------------------

def _clean_login(login: str) -> str:
    login = (login or "").strip().lower()
    if not LOGIN_RE.match(login):
        raise ValidationFailed("登录名须为 3–40 位小写字母、数字、下划线、点或连字符", details={"field": "login"})
    return login


def _clean_phone(phone: str | None) -> str | None:
    phone = (phone or "").strip() or None
    if phone is not None and not PHONE_RE.match(phone):
        raise ValidationFailed("手机号须为 11 位数字，以 1 开头", details={"field": "phone"})
    return phone


def _clean_display_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("请填写姓名", details={"field": "display_name"})
    if len(name) > 40:
        raise ValidationFailed("姓名不能超过 40 个字", details={"field": "display_name"})
    return name


def list_users(session: Session, *, q: str | None = None, offset: int = 0, limit: int = 50) -> tuple[list[User], int]:
    stmt = select(User)
    if q:
        like = f"%{q.strip()}%"
        stmt = stmt.where(User.login.like(like) | User.display_name.like(like))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = list(session.execute(stmt.order_by(User.login).offset(offset).limit(limit)).scalars())
    return rows, int(total)


def get_user(session: Session, user_id: int) -> User:
    u = get_or_not_found(session, User, user_id)
    return u


def create_user(session: Session, actor: Actor, *, login: str, display_name: str, password: str,
                phone: str | None = None, must_change_password: bool = True) -> User:
    login = _clean_login(login)
    problem = password_problem(password, login)
    if problem:
        raise ValidationFailed(problem, details={"field": "password"})
    if session.execute(select(User.id).where(User.login == login)).first():
        raise Conflict(f"登录名 {login} 已被使用", details={"field": "login"})
    user = User(login=login, display_name=_clean_display_name(display_name), phone=_clean_phone(phone),
                password_hash=hash_password(password), must_change_password=must_change_password,
                password_changed_at=utcnow())
    session.add(user)
    session.flush()
    audit.record(session, actor, "auth.user.create", object_type="user", object_id=user.id,
                 after={"login": login, "display_name": user.display_name})
    return user


def update_user(session: Session, actor: Actor, user_id: int, *, display_name: str, phone: str | None) -> User:
    user = get_user(session, user_id)
    before = {"display_name": user.display_name, "phone": "已设置" if user.phone else None}
    user.display_name = _clean_display_name(display_name)
    user.phone = _clean_phone(phone)
    session.flush()
    audit.record(session, actor, "auth.user.update", object_type="user", object_id=user.id, before=before,
                 after={"display_name": user.display_name, "phone": "已设置" if user.phone else None})
    return user


def set_user_active(session: Session, actor: Actor, user_id: int, active: bool) -> User:
    user = get_user(session, user_id)
    if user.active == active:
        return user
    if not active and actor.user_id == user.id:
        raise Conflict("不能停用自己的账号")
    user.active = active
    user.deactivated_at = None if active else utcnow()
    if not active:
        revoke_all_sessions(session, user.id)
    session.flush()
    audit.record(session, actor, "auth.user.activate" if active else "auth.user.deactivate",
                 object_type="user", object_id=user.id, before={"active": not active}, after={"active": active})
    return user


def admin_reset_password(session: Session, actor: Actor, user_id: int, new_password: str) -> User:
    user = get_user(session, user_id)
    problem = password_problem(new_password, user.login)
    if problem:
        raise ValidationFailed(problem, details={"field": "password"})
    user.password_hash = hash_password(new_password)
    user.must_change_password = True
    user.password_changed_at = utcnow()
    revoke_all_sessions(session, user.id)
    revoke_all_tokens(session, user.id) # a reset after a compromise ends every credential
    throttle.reset(session, user.login, utcnow())  # the addresses locked out by failures may use the new password
    session.flush()
    audit.record(session, actor, "auth.user.reset_password", object_type="user", object_id=user.id)
    return user


def change_own_password(session: Session, actor: Actor, user_id: int, *, current: str, new: str,
                        keep_session_id: int | None) -> User:
    user = get_user(session, user_id)
    if not verify_password(current, user.password_hash):
        raise ValidationFailed("当前密码不正确", details={"field": "current_password"})
    problem = password_problem(new, user.login)
    if problem:
        raise ValidationFailed(problem, details={"field": "new_password"})
    if verify_password(new, user.password_hash):
        raise ValidationFailed("新密码不能与当前密码相同", details={"field": "new_password"})
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.password_changed_at = utcnow()
    # Other sessions of this user end: someone who knew the old password is logged out.
    stmt = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if keep_session_id is not None:
        stmt = stmt.where(UserSession.id != keep_session_id)
    session.execute(stmt.values(revoked_at=utcnow()))
    session.flush()
    audit.record(session, actor, "auth.password.change", object_type="user", object_id=user.id)
    return user


def set_preferences(session: Session, actor: Actor, user_id: int, *, large_font: bool | None = None,
                    locale: str | None = None) -> User:
    user = get_user(session, user_id)
    before = {"large_font": user.large_font, "locale": user.locale}
    if large_font is not None:
        user.large_font = large_font
    if locale is not None:
        if locale not in ("zh_CN", "en"):
            raise ValidationFailed("不支持的语言", details={"field": "locale"})
        user.locale = locale
    session.flush()
    audit.record(session, actor, "auth.user.preferences", object_type="user", object_id=user.id, before=before,
                 after={"large_font": user.large_font, "locale": user.locale})
    return user


# ---- grants -------------------------------------------------------------------------------------------------------

SCOPE_WORDS = {"township_id": "乡镇", "village_id": "村", "store_id": "超市", "household_id": "农户"}
ROLES_FOR_SCOPE = {"township_id": "乡镇审核员", "village_id": "村文书或评比委员", "store_id": "超市管理员",
                   "household_id": "农户"}


@dataclass(frozen=True)
class GrantPlan:
    """A grant checked and described before it is made: the role, the one scope it needs, and in words."""

    user: User
    role: Role
    scope: dict[str, int | None]
    place: str  # 振风县 / 城关镇 / 红旗村 / 红旗村振风超市 / 红旗村 户号 001

    @property
    def what(self) -> str:
        return f"{self.place} {ROLE_LABELS[self.role]}"

    @property
    def sentence(self) -> str:
        return f"将授予 {self.user.display_name}（{self.user.login}）“{self.what}”"


def plan_grant(session: Session, user_id: int, role: str, *, township_id: int | None = None,
               village_id: int | None = None, store_id: int | None = None,
               household_id: int | None = None) -> GrantPlan:
    """What granting `role` with these scope fields would give, or why it is refused. Nothing is assumed: the role
    must be named (no default, so choosing only a place grants nothing), the one scope the role needs must be
    chosen, and a scope the role does not take is refused rather than dropped, with what to choose instead."""
    user = get_user(session, user_id)
    if not (role or "").strip():
        raise ValidationFailed("请先选择要授予的角色（县管理员、乡镇审核员、村文书、评比委员、超市管理员或农户）",
                               details={"field": "role"}, code="role_required")
    try:
        r = Role(role)
    except ValueError:
        raise ValidationFailed("未知的角色：请从列表中选择", details={"field": "role"}) from None
    given = {"township_id": township_id, "village_id": village_id, "store_id": store_id,
             "household_id": household_id}
    need = ROLE_SCOPE_COLUMN[r]
    label = ROLE_LABELS[r]
    extra = [col for col, val in given.items() if val is not None and col != need]
    if extra:
        chosen = "、".join(SCOPE_WORDS[c] for c in extra)
        fits = "；".join(f"选{SCOPE_WORDS[c]}的请授予“{ROLES_FOR_SCOPE[c]}”" for c in extra)
        if need is None:
            msg = f"{label}管理全县，不选择范围：请清空{chosen}；{fits}"
        else:
            msg = f"{label}只选择{SCOPE_WORDS[need]}，不选{chosen}：请清空{chosen}；{fits}"
        raise ValidationFailed(msg, details={"field": extra[0]}, code="scope_mismatch")
    if need is not None and given[need] is None:
        raise ValidationFailed(f"{label}必须指定所属{SCOPE_WORDS[need]}", details={"field": need})
    if need is None:
        try:
            place = org.get_county(session).name
        except NotFound:
            place = "全县"
    else:
        model = {"township_id": Township, "village_id": Village, "store_id": Store, "household_id": Household}[need]
        obj = session.get(model, given[need])
        if obj is None:
            raise ValidationFailed(f"所选{SCOPE_WORDS[need]}不存在：请从列表中选择", details={"field": need})
        if isinstance(obj, Household):
            v = session.get(Village, obj.village_id)
            place = f"{v.name if v else ''} 户号 {obj.number}（{obj.head_name}户）"
        else:
            place = obj.name
    return GrantPlan(user, r, given, place)


def grant_role(session: Session, actor: Actor, user_id: int, role: str, *, township_id: int | None = None,
               village_id: int | None = None, store_id: int | None = None,
               household_id: int | None = None) -> RoleGrant:
    plan = plan_grant(session, user_id, role, township_id=township_id, village_id=village_id, store_id=store_id,
                      household_id=household_id)
    dup = select(RoleGrant.id).where(RoleGrant.user_id == plan.user.id, RoleGrant.role == plan.role.value,
                                     RoleGrant.revoked_at.is_(None))
    for col, val in plan.scope.items():
        dup = dup.where(getattr(RoleGrant, col).is_(None) if val is None else getattr(RoleGrant, col) == val)
    if session.execute(dup).first():
        raise Conflict(f"{plan.user.display_name} 已有相同的授权：“{plan.what}”")
    g = RoleGrant(user_id=plan.user.id, role=plan.role.value, **plan.scope)
    session.add(g)
    session.flush()
    audit.record(session, actor, "auth.grant.create", object_type="grant", object_id=g.id,
                 after={"user_id": plan.user.id, "role": plan.role.value, "granted": plan.what,
                        **{k: v for k, v in plan.scope.items() if v is not None}})
    return g


def revoke_grant(session: Session, actor: Actor, grant_id: int) -> RoleGrant:
    g = get_or_not_found(session, RoleGrant, grant_id)
    if g.revoked_at is None:
        g.revoked_at = utcnow()
        session.execute(update(ApiToken).where(ApiToken.grant_id == g.id, ApiToken.revoked_at.is_(None))
                        .values(revoked_at=utcnow()))
        session.flush()
        audit.record(session, actor, "auth.grant.revoke", object_type="grant", object_id=g.id,
                     before={"user_id": g.user_id, "role": g.role})
    return g


def grant_views(session: Session, user_id: int) -> list[GrantView]:
    return _grant_views(session, active_grants(session, user_id))


# ---- login, sessions, throttling ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoginResult:
    principal: Principal
    token: str  # the cookie value; only its hash is stored


def _limits(settings: Settings) -> throttle.Limits:
    return throttle.Limits(per_subject=settings.login_max_failures_per_account,
                           per_address=settings.login_max_failures_per_address,
                           window_minutes=settings.login_window_minutes,
                           slow_max_seconds=settings.login_slow_max_seconds)


def _login_name(login: str) -> str:
    return (login or "").strip().lower()[:40]


def login_slowdown(session: Session, settings: Settings, *, login: str, ip: str) -> throttle.Slowdown:
    """How long a login for this account from this address waits before its password is checked (the account
    failed lately from other addresses). Read only: the caller waits holding no transaction, then calls `login`."""
    name = _login_name(login)
    if not name:
        return throttle.NO_WAIT
    return throttle.slowdown(session, _limits(settings), name, throttle.address_key(ip), utcnow())


def _temporary_password_expired(user: User, now: datetime) -> bool:
    """A password set by someone else (must_change_password) and not changed within TEMP_PASSWORD_DAYS."""
    issued = user.password_changed_at
    return bool(user.must_change_password and issued is not None
                and issued + timedelta(days=TEMP_PASSWORD_DAYS) <= now)


def login(session: Session, settings: Settings, *, login: str, password: str, ip: str, user_agent: str | None,
          request_id: str | None, slowed: throttle.Slowdown = throttle.NO_WAIT) -> LoginResult:
    """Check the password with throttling (app.auth.service.throttle); on success open a new session (a new id every login).

    `slowed`: the wait `login_slowdown` asked for, already served by the caller outside this transaction (audited
    here). The refusals (TooManyRequests) and failures (NotAuthenticated) write the attempt and its audit event: the
    caller commits them."""
    name = _login_name(login)
    ip = (ip or "unknown")[:64]
    anon = Actor(user_id=None, name=name or "（空）", request_id=request_id, ip=ip)
    if not name or not password:
        raise ValidationFailed("请输入登录名和密码")
    address = throttle.address_key(ip)
    throttle.lock(session, f"login:{name}", f"addr:{address}")  # count, check and record as one, per account/address
    now = utcnow()
    limits = _limits(settings)
    if slowed.seconds:
        audit.record(session, anon, "auth.login_slowed", object_type="login", object_id=name, after=slowed.audit(),
                     note="该账号近期在其他地址多次登录失败，本次登录延后核对")
    minutes = throttle.address_wait(session, limits, address, now)
    if minutes:
        audit.record(session, anon, "auth.login_throttled", object_type="login", object_id=name,
                     note="本机（本网络）登录失败次数过多")
        raise TooManyRequests(f"本机登录失败次数过多，请在 {minutes} 分钟后再试", code="login_throttled")
    minutes = throttle.subject_wait(session, limits, name, address, now)
    if minutes:
        audit.record(session, anon, "auth.login_throttled", object_type="login", object_id=name,
                     note="本机（本网络）对该账号登录失败次数过多")
        raise TooManyRequests(f"该账号在本机登录失败次数过多，已暂时锁定，请在 {minutes} 分钟后再试；"
                              "如忘记密码，请联系管理员重置", code="login_throttled")
    user = session.execute(select(User).where(User.login == name)).scalar_one_or_none()
    ok = verify_password(password[:256], user.password_hash if user else None)
    if not ok or user is None or not user.active:
        throttle.record(session, name, address, now, ok=False)
        reason = "停用账号" if (ok and user is not None) else "密码错误或账号不存在"
        audit.record(session, anon, "auth.login_failed", object_type="login", object_id=name, note=reason)
        session.flush()
        raise NotAuthenticated("登录名或密码不正确" if not (ok and user) else "该账号已停用，请联系管理员",
                               code="login_failed")
    if _temporary_password_expired(user, now):
        throttle.record(session, name, address, now, ok=False)
        audit.record(session, anon, "auth.login_failed", object_type="login", object_id=name, note="临时密码已过期")
        session.flush()
        raise NotAuthenticated(f"临时密码超过 {TEMP_PASSWORD_DAYS} 天没有修改，已经失效：请联系县管理员重新重置密码",
                               code="temporary_password_expired")
    grants = active_grants(session, user.id)
    throttle.record(session, name, address, now, ok=True)
    token = new_token()
    us = UserSession(token_hash=sha256_hex(token), user_id=user.id, csrf_token=new_token(24),
                     created_at=now, last_seen_at=now,
                     expires_at=now + timedelta(hours=settings.session_absolute_hours),
                     ip=ip, user_agent=(user_agent or "")[:200])
    session.add(us)
    session.flush()
    p = _principal(session, user, grants, session_id=us.id, csrf_token=us.csrf_token, request_id=request_id, ip=ip)
    audit.record(session, p.actor(), "auth.login", object_type="user", object_id=user.id)
    return LoginResult(principal=p, token=token)


@dataclass(frozen=True)
class SessionLookup:
    principal: Principal | None
    needs_touch: bool = False
    reason: str | None = None  # why a presented session was not accepted


def principal_from_session(session: Session, settings: Settings, token: str, *, request_id: str | None,
                           ip: str | None) -> SessionLookup:
    us = session.execute(select(UserSession).where(UserSession.token_hash == sha256_hex(token))).scalar_one_or_none()
    if us is None or us.revoked_at is not None:
        return SessionLookup(None, reason="会话已失效，请重新登录")
    now = utcnow()
    if us.expires_at <= now or us.last_seen_at + timedelta(minutes=settings.session_idle_minutes) <= now:
        return SessionLookup(None, reason="长时间未操作，已自动退出，请重新登录")
    user = session.get(User, us.user_id)
    if user is None or not user.active:
        return SessionLookup(None, reason="该账号已停用，请联系管理员")
    p = _principal(session, user, active_grants(session, user.id), session_id=us.id,
                   csrf_token=us.csrf_token, request_id=request_id, ip=ip)
    return SessionLookup(p, needs_touch=(now - us.last_seen_at) > timedelta(seconds=60))


def touch_session(session: Session, session_id: int) -> None:
    session.execute(update(UserSession).where(UserSession.id == session_id).values(last_seen_at=utcnow()))


def logout(session: Session, principal: Principal) -> None:
    if principal.session_id is not None:
        session.execute(update(UserSession).where(UserSession.id == principal.session_id)
                        .values(revoked_at=utcnow()))
    audit.record(session, principal.actor(), "auth.logout", object_type="user", object_id=principal.user_id)


def active_sessions(session: Session, settings: Settings, user_id: int) -> list[UserSession]:
    """The user's sessions that would still be accepted now (newest use first): what the account page lists."""
    now = utcnow()
    idle_since = now - timedelta(minutes=settings.session_idle_minutes)
    return list(session.execute(select(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None), UserSession.expires_at > now,
        UserSession.last_seen_at > idle_since).order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()))
        .scalars())


def end_other_sessions(session: Session, actor: Actor, user_id: int, *, password: str,
                       keep_session_id: int | None) -> int:
    """Sign the user out everywhere else, once the password is typed again (a session left open on another PC is not
    enough to end the others). Returns how many sessions ended."""
    user = get_user(session, user_id)
    if not verify_password(password[:256], user.password_hash):
        raise ValidationFailed("密码不正确：退出其他设备前，请输入您当前的登录密码", details={"field": "password"})
    stmt = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if keep_session_id is not None:
        stmt = stmt.where(UserSession.id != keep_session_id)
    ended = session.execute(stmt.values(revoked_at=utcnow())).rowcount or 0
    session.flush()
    audit.record(session, actor, "auth.session.end_others", object_type="user", object_id=user.id,
                 after={"ended": ended})
    return int(ended)


def revoke_all_sessions(session: Session, user_id: int) -> None:
    session.execute(update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def revoke_all_tokens(session: Session, user_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


# ---- API tokens ---------------------------------------------------------------------------------------------------

TOKEN_PREFIX = "zf"


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once


def _refuse_token_principal(via: str) -> None:
    # A token acts with one grant only; letting it mint or revoke tokens would let it reach the user's other grants.
    if via == "token":
        raise ValidationFailed("API 令牌不能用来新建或吊销令牌：请登录网页，在“我的账号”中操作", code="token_not_allowed")


def create_api_token(session: Session, actor: Actor, *, user_id: int, grant_id: int, name: str,
                     days: int | None = 365, via: str = "session") -> NewToken:
    _refuse_token_principal(via)
    g = session.get(RoleGrant, grant_id)
    if g is None or g.user_id != user_id or g.revoked_at is not None:
        raise ValidationFailed("请选择您自己的一项有效授权", details={"field": "grant_id"})
    name = (name or "").strip()
    if not name or len(name) > 60:
        raise ValidationFailed("请填写令牌用途（不超过 60 个字）", details={"field": "name"})
    if days is not None and not 1 <= days <= 3650:
        raise ValidationFailed("有效期须为 1 到 3650 天", details={"field": "days"})
    prefix = new_token(6)[:8].replace("-", "a").replace("_", "b")
    secret_part = new_token(32)
    full = f"{TOKEN_PREFIX}_{prefix}_{secret_part}"
    now = utcnow()
    t = ApiToken(user_id=user_id, grant_id=grant_id, name=name, prefix=prefix, token_hash=sha256_hex(full),
                 created_at=now, expires_at=now + timedelta(days=days) if days else None)
    session.add(t)
    session.flush()
    audit.record(session, actor, "auth.token.create", object_type="api_token", object_id=t.id,
                 after={"name": name, "grant_id": grant_id, "prefix": prefix})
    return NewToken(token=t, secret=full)


def list_api_tokens(session: Session, user_id: int) -> list[ApiToken]:
    return list(session.execute(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc()))
                .scalars())


def revoke_api_token(session: Session, actor: Actor, *, user_id: int, token_id: int, admin: bool = False,
                     via: str = "session") -> ApiToken:
    _refuse_token_principal(via)
    t = session.get(ApiToken, token_id)
    if t is None or (t.user_id != user_id and not admin):
        raise NotFound()
    if t.revoked_at is None:
        t.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, "auth.token.revoke", object_type="api_token", object_id=t.id)
    return t


def principal_from_token(session: Session, raw: str, *, request_id: str | None, ip: str | None) -> Principal:
    parts = (raw or "").split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise NotAuthenticated("API 令牌格式不正确", code="bad_token")
    # the token, its user and its grant in one statement (a till sends one request per customer)
    found = session.execute(select(ApiToken, User, RoleGrant)
                            .join(User, User.id == ApiToken.user_id, isouter=True)
                            .join(RoleGrant, RoleGrant.id == ApiToken.grant_id, isouter=True)
                            .where(ApiToken.prefix == parts[1])).first()
    t, user, g = found if found is not None else (None, None, None)
    if t is None or not same(t.token_hash, sha256_hex(raw)):
        raise NotAuthenticated("API 令牌无效", code="bad_token")
    if t.revoked_at is not None:
        raise NotAuthenticated("API 令牌已被吊销", code="bad_token")
    if t.expires_at is not None and t.expires_at <= utcnow():
        raise NotAuthenticated("API 令牌已过期", code="bad_token")
    if user is None or not user.active:
        raise NotAuthenticated("该账号已停用", code="bad_token")
    if g is None or g.revoked_at is not None:
        raise NotAuthenticated("令牌对应的授权已撤销", code="bad_token")
    return _principal(session, user, [g], via="token", request_id=request_id, ip=ip)
