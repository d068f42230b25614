"""Use-cases of the household registry: households, members, their changes over time, and search.

Services flush, never commit. Every change writes an audit event and a household history event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_, false, func, or_, select, text
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.cn_id import check_id_number
from app.core.context import Actor
from app.core.masking import mask_name
from app.core.pinyin import full_pinyin, initials
from app.core.scope import Scope, ScopeFilter
from app.errors import Conflict, ValidationFailed, get_or_not_found
from app.households.models import (
    HEAD,
    NO_GROUP_SORT,
    RELATIONS,
    Household,
    HouseholdEvent,
    HouseholdMembership,
    HouseholdStatus,
    Member,
    MemberStatus,
)
from app.households.service import privacy
from app.org.models import Group, Village

NAME_RE = re.compile(r"^[\u3400-\u9fff\u00b7·A-Za-z]{1,40}$")
PHONE_RE = re.compile(r"^(1\d{10}|0\d{2,3}-?\d{7,8})$")
NUMBER_RE = re.compile(r"^[0-9A-Za-z\-]{1,20}$")


# ---- small helpers ------------------------------------------------------------------------------------------------

def number_sort_key(number: str) -> str:
    """'2' < '10' < '10-3': digit runs zero-padded to 8, so a plain string order is the natural order."""
    return re.sub(r"\d+", lambda m: m.group(0).zfill(8), number.strip())[:60]


def prefix_range(column: Any, prefix: str) -> Any:
    """`column LIKE 'prefix%'` written as a range, so both SQLite and PostgreSQL use the index."""
    return and_(column >= prefix, column < prefix + "\uffff")


def clean_number(number: str) -> str:
    n = (number or "").strip()
    if not NUMBER_RE.match(n):
        raise ValidationFailed("户号须为 1–20 位数字、字母或连字符，例如 023 或 3-015", details={"field": "number"})
    return n


def clean_phone(phone: str | None, field_name: str = "phone") -> str | None:
    p = (phone or "").strip().replace(" ", "")
    if not p:
        return None
    if not PHONE_RE.match(p):
        raise ValidationFailed(f"电话号码 {p} 格式不对：手机为 11 位数字，座机如 0551-12345678",
                               details={"field": field_name})
    return p


@dataclass
class MemberInput:
    name: str
    relation: str
    gender: str | None = None
    birth_date: date | None = None
    id_number: str | None = None
    phone: str | None = None
    party_member: bool = False
    living_away: bool = False


@dataclass
class CleanMember:
    name: str
    relation: str
    gender: str | None
    birth_date: date | None
    id_number: str | None
    id_key: str | None
    phone: str | None
    party_member: bool
    living_away: bool
    warnings: list[str] = field(default_factory=list)


def clean_member(data: MemberInput, *, today: date | None = None) -> CleanMember:
    """Validate one member's fields; raises ValidationFailed naming the field. Fills gender and birth date from the
    ID number when they are missing, and refuses a contradiction."""
    name = (data.name or "").strip().replace(" ", "")
    if not name:
        raise ValidationFailed("请填写姓名", details={"field": "name"})
    if not NAME_RE.match(name):
        raise ValidationFailed(f"姓名“{name[:40]}”含有非法字符或超过 40 个字", details={"field": "name"})
    relation = (data.relation or "").strip()
    if relation == "本人":
        relation = HEAD
    if relation not in RELATIONS:
        raise ValidationFailed(f"与户主关系“{relation}”不在可选范围内：{'、'.join(RELATIONS)}",
                               details={"field": "relation"})
    idc = check_id_number(data.id_number, today=today)
    if idc.error:
        raise ValidationFailed(idc.error, details={"field": "id_number"})
    gender = (data.gender or "").strip() or None
    if gender not in (None, "男", "女"):
        raise ValidationFailed("性别须为“男”或“女”", details={"field": "gender"})
    if gender and idc.gender and gender != idc.gender:
        raise ValidationFailed(f"性别“{gender}”与身份证号不符（身份证号表明为{idc.gender}）", details={"field": "gender"})
    birth = data.birth_date
    if birth and idc.birth_date and birth != idc.birth_date:
        raise ValidationFailed(f"出生日期 {birth} 与身份证号中的 {idc.birth_date} 不符", details={"field": "birth_date"})
    if birth and birth > (today or date.today()):
        raise ValidationFailed(f"出生日期 {birth} 在未来", details={"field": "birth_date"})
    return CleanMember(name=name, relation=relation, gender=gender or idc.gender, birth_date=birth or idc.birth_date,
                       id_number=idc.value, id_key=idc.key, phone=clean_phone(data.phone), party_member=data.party_member,
                       living_away=data.living_away)


def _event(session: Session, actor: Actor, household_id: int, kind: str, description: str,
           details: dict[str, Any] | None = None) -> None:
    session.add(HouseholdEvent(household_id=household_id, kind=kind, description=description[:500],
                               details=details or {}, actor_id=actor.user_id, actor_name=actor.name, at=utcnow()))


def _id_taken(session: Session, id_key: str | None, except_member: int | None = None) -> Member | None:
    if not id_key:
        return None
    stmt = select(Member).where(Member.id_key == id_key)
    if except_member is not None:
        stmt = stmt.where(Member.id != except_member)
    return session.execute(stmt).scalar_one_or_none()


def _where_registered(session: Session, m: Member, village_id: int) -> str:
    """Where an ID number is registered, told only within the same village: another village's roster leaks nothing."""
    if m.village_id != village_id:
        return "其他村（如需转入本村，请先由原村办理迁出；有疑问请联系县管理员）"
    h = session.get(Household, m.household_id)
    return f"本村户号 {h.number if h else '?'}（{mask_name(m.name)}）"


def _refresh_head(session: Session, h: Household) -> None:
    head = session.get(Member, h.head_member_id) if h.head_member_id else None
    h.head_name = head.name if head else ""
    h.head_pinyin = head.name_pinyin if head else ""
    h.updated_at = utcnow()


def _new_member(session: Session, h: Household, c: CleanMember, started: date, reason: str) -> Member:
    m = Member(household_id=h.id, village_id=h.village_id, name=c.name, name_pinyin=full_pinyin(c.name),
               name_initials=initials(c.name), relation=c.relation, gender=c.gender, birth_date=c.birth_date,
               id_number=c.id_number, id_key=c.id_key, phone=c.phone, party_member=c.party_member,
               living_away=c.living_away)
    session.add(m)
    session.flush()
    session.add(HouseholdMembership(member_id=m.id, household_id=h.id, relation=c.relation, started_on=started,
                                    reason=reason))
    return m


# ---- scopes -------------------------------------------------------------------------------------------------------

def scope_of_household(session: Session, household_id: int) -> Scope | None:
    row = session.execute(select(Household.village_id, Village.township_id)
                          .join(Village, Village.id == Household.village_id)
                          .where(Household.id == household_id)).first()
    return Scope(township_id=row.township_id, village_id=row.village_id, household_id=household_id) if row else None


def scope_of_member(session: Session, member_id: int) -> Scope | None:
    m = session.get(Member, member_id)
    return scope_of_household(session, m.household_id) if m else None


# ---- reading ------------------------------------------------------------------------------------------------------

def get_household(session: Session, household_id: int) -> Household:
    h = get_or_not_found(session, Household, household_id)
    return h


def get_member(session: Session, member_id: int) -> Member:
    m = get_or_not_found(session, Member, member_id)
    return m


def record_full_view(session: Session, actor: Actor, household_id: int) -> None:
    """ASVS 8.3.5: opening a household's full record (unmasked ID numbers and phones) leaves an audit event, with
    the household's id and how many members were shown, never an ID number. The page and the API call this when,
    and only when, they show the record unmasked."""
    n = session.execute(select(func.count()).select_from(Member).where(Member.household_id == household_id)).scalar_one()
    audit.record(session, actor, "households.view_full", object_type="household", object_id=household_id,
                 after={"members": n})


def members_of(session: Session, household_id: int, *, include_former: bool = True) -> list[Member]:
    stmt = select(Member).where(Member.household_id == household_id)
    if not include_former:
        stmt = stmt.where(Member.status == MemberStatus.PRESENT.value)
    members = list(session.execute(stmt).scalars())
    order = {r: i for i, r in enumerate(RELATIONS)}
    return sorted(members, key=lambda m: (m.status != "present", m.relation != HEAD, order.get(m.relation, 99),
                                          m.birth_date or date.max, m.id or 0))


def history(session: Session, household_id: int) -> list[HouseholdEvent]:
    return list(session.execute(select(HouseholdEvent).where(HouseholdEvent.household_id == household_id)
                                .order_by(HouseholdEvent.at.desc(), HouseholdEvent.id.desc())).scalars())


def memberships(session: Session, household_id: int) -> list[tuple[HouseholdMembership, Member]]:
    rows = session.execute(select(HouseholdMembership, Member).join(Member, Member.id == HouseholdMembership.member_id)
                           .where(HouseholdMembership.household_id == household_id)
                           .order_by(HouseholdMembership.started_on, HouseholdMembership.id)).all()
    return [(r[0], r[1]) for r in rows]


BROAD = 2000  # a name search matching more members than this reports "more than 2000" instead of counting


@dataclass
class SearchResult:
    rows: list[Household]
    total: int  # exact, or BROAD when total_exact is False
    groups: dict[int, Group]
    matched: dict[int, list[str]]  # household id -> names of members that matched the query
    total_exact: bool = True


def _reach(flt: ScopeFilter) -> list[Any]:
    """The conditions on Household for what a (not everything) filter reaches; empty when it reaches nothing."""
    conds: list[Any] = []
    if flt.village_ids:
        conds.append(Household.village_id.in_(flt.village_ids))
    if flt.township_ids:
        conds.append(Household.village_id.in_(select(Village.id).where(Village.township_id.in_(flt.township_ids))))
    if flt.household_ids:
        conds.append(Household.id.in_(flt.household_ids))
    return conds


def search(session: Session, flt: ScopeFilter, *, q: str | None = None, village_id: int | None = None,
           group_id: int | None = None, status: str | None = None, sort: str = "number", offset: int = 0,
           limit: int = 50, id_scope: ScopeFilter | None = None) -> SearchResult:
    """Find households by name (汉字 prefix, full pinyin or initials prefix), household number, ID number (exact),
    group and status, within what the filter reaches. Sorted by group, then number or the head's pinyin.

    `id_scope`, when given, is where an ID number may be matched: the households whose full record the viewer may
    see. Elsewhere a typed ID number matches nothing, or the search would confirm a guessed number, one guess at a
    time, to someone who sees it masked (privacy.py)."""
    stmt = select(Household)
    if not flt.everything:
        conds = _reach(flt)
        if not conds:
            return SearchResult([], 0, {}, {})
        stmt = stmt.where(or_(*conds))
    if village_id is not None:
        stmt = stmt.where(Household.village_id == village_id)
    if group_id is not None:
        stmt = stmt.where(Household.group_id == group_id)
    if status:
        stmt = stmt.where(Household.status == status)
    term = (q or "").strip().replace(" ", "")
    member_cond: Any = None
    exact = True
    narrow: list[int] | None = None
    if term:
        if re.fullmatch(r"\d{17}[\dXx]|\d{15}", term):
            key = check_id_number(term).key or term.upper()
            member_cond = Member.id_key == key
            if id_scope is not None and not id_scope.everything:
                reach = _reach(id_scope)
                member_cond = and_(member_cond, Member.household_id.in_(select(Household.id).where(or_(*reach)))) \
                    if reach else false()
        elif term.isascii() and term.isalpha():
            low = term.lower()
            member_cond = or_(prefix_range(Member.name_initials, low), prefix_range(Member.name_pinyin, low))
        elif NUMBER_RE.match(term):
            stmt = stmt.where(or_(Household.number == term, prefix_range(Household.number_sort, number_sort_key(term))))
        else:
            member_cond = prefix_range(Member.name, term)
        if member_cond is not None:
            mstmt = select(Member.household_id).where(member_cond)
            if village_id is not None:
                mstmt = mstmt.where(Member.village_id == village_id)
            elif not flt.everything and flt.village_ids and not flt.township_ids and not flt.household_ids:
                mstmt = mstmt.where(Member.village_id.in_(flt.village_ids))
            # A narrow term (the usual case) is looked up through the name indexes; a broad one (two letters
            # county-wide can match tens of thousands) walks households in list order and stops at the page's end,
            # and its total is reported as "more than BROAD".
            # The matching ids are fetched first and handed over as a list: planners misjudge how many rows a
            # name prefix matches (PostgreSQL then walks every household in list order).
            found_ids = list(session.execute(mstmt.limit(BROAD + 1)).scalars())
            if len(found_ids) > BROAD:
                exact = False
                stmt = stmt.where(select(Member.id).where(Member.household_id == Household.id, member_cond).exists())
                if session.get_bind().dialect.name == "postgresql":
                    # The walk stops after one page; starting parallel workers for it costs more than it saves.
                    session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
            else:
                narrow = sorted(set(found_ids))
    order: list[Any] = [Household.village_id, Household.group_sort]
    order += [Household.head_pinyin, Household.number_sort] if sort == "pinyin" else [Household.number_sort]
    if narrow is not None:
        # At most BROAD households: their sort keys are fetched and ordered here, then the page is loaded by id.
        keys: list[Any] = []
        for i in range(0, len(narrow), 900):
            chunk = stmt.where(Household.id.in_(narrow[i:i + 900])).with_only_columns(Household.id, *order)
            keys.extend(session.execute(chunk).all())
        keys.sort(key=lambda r: tuple(r[1:]))
        total = len(keys)
        page_ids = [r[0] for r in keys[offset:offset + limit]]
        found = {h.id: h for h in session.execute(select(Household).where(Household.id.in_(page_ids))).scalars()}
        rows = [found[i] for i in page_ids]
    else:
        total = int(session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()) if exact else BROAD
        rows = list(session.execute(stmt.order_by(*order).offset(offset).limit(limit)).scalars())
    group_ids = {h.group_id for h in rows if h.group_id}
    groups = {g.id: g for g in session.execute(select(Group).where(Group.id.in_(group_ids))).scalars()} if group_ids else {}
    matched: dict[int, list[str]] = {}
    if member_cond is not None and rows:
        for hid, name in session.execute(select(Member.household_id, Member.name)
                                         .where(member_cond, Member.household_id.in_([h.id for h in rows]))):
            matched.setdefault(hid, []).append(name)
    return SearchResult(rows, total, groups, matched, exact)


# ---- writing ------------------------------------------------------------------------------------------------------

def _check_group(session: Session, village_id: int, group_id: int | None) -> Group | None:
    if group_id is None:
        return None
    g = session.get(Group, group_id)
    if g is None or g.village_id != village_id:
        raise ValidationFailed("所选村民小组不属于本村", details={"field": "group_id"})
    if not g.active:
        raise ValidationFailed(f"{g.name}已停用", details={"field": "group_id"})
    return g


def create_household(session: Session, actor: Actor, *, village_id: int, number: str, head: MemberInput,
                     group_id: int | None = None, address: str | None = None, phone: str | None = None,
                     notes: str | None = None, on: date | None = None) -> Household:
    v = get_or_not_found(session, Village, village_id)
    if not v.active:
        raise ValidationFailed(f"{v.name}已停用，不能新建农户")
    number = clean_number(number)
    group = _check_group(session, village_id, group_id)
    if session.execute(select(Household.id).where(Household.village_id == village_id,
                                                  Household.number == number)).first():
        raise Conflict(f"{v.name}已有户号 {number}", details={"field": "number"})
    head.relation = HEAD
    c = clean_member(head)
    taken = _id_taken(session, c.id_key)
    if taken:
        raise Conflict(f"身份证号已登记在{_where_registered(session, taken, village_id)}", details={"field": "id_number"})
    h = Household(village_id=village_id, group_id=group_id, group_sort=group.number if group else NO_GROUP_SORT,
                  number=number, number_sort=number_sort_key(number), address=(address or "").strip()[:200] or None,
                  phone=clean_phone(phone), notes=(notes or "").strip()[:500] or None)
    session.add(h)
    session.flush()
    m = _new_member(session, h, c, on or date.today(), "建户")
    h.head_member_id = m.id
    _refresh_head(session, h)
    _event(session, actor, h.id, "created", f"建户，户主 {m.name}", {"number": number})
    session.flush()
    audit.record(session, actor, "households.create", object_type="household", object_id=h.id,
                 after={"village_id": village_id, "number": number, "head": mask_name(m.name)})
    return h


def update_household(session: Session, actor: Actor, household_id: int, *, address: str | None, phone: str | None,
                     notes: str | None) -> Household:
    h = get_household(session, household_id)
    before = {"address": h.address, "phone": "已设置" if h.phone else None, "notes": h.notes}
    h.address = (address or "").strip()[:200] or None
    h.phone = clean_phone(phone)
    h.notes = (notes or "").strip()[:500] or None
    h.updated_at = utcnow()
    after = {"address": h.address, "phone": "已设置" if h.phone else None, "notes": h.notes}
    if before != after:
        _event(session, actor, h.id, "edited", "修改户信息", {"before": before, "after": after})
        session.flush()
        audit.record(session, actor, "households.update", object_type="household", object_id=h.id,
                     before=before, after=after)
    return h


def add_member(session: Session, actor: Actor, household_id: int, data: MemberInput, *,
               on: date | None = None, reason: str = "新增成员") -> Member:
    h = get_household(session, household_id)
    if h.status != HouseholdStatus.ACTIVE.value:
        raise ValidationFailed("该户已迁出或注销，不能添加成员")
    c = clean_member(data)
    if c.relation == HEAD:
        raise ValidationFailed("一户只能有一位户主；如要更换户主，请使用“更换户主”", details={"field": "relation"})
    taken = _id_taken(session, c.id_key)
    if taken:
        raise Conflict(f"身份证号已登记在{_where_registered(session, taken, h.village_id)}", details={"field": "id_number"})
    m = _new_member(session, h, c, on or date.today(), reason)
    _event(session, actor, h.id, "member_added", f"新增成员 {m.name}（{m.relation}）", {"member_id": m.id})
    h.updated_at = utcnow()
    session.flush()
    audit.record(session, actor, "households.member.add", object_type="member", object_id=m.id,
                 after={"household_id": h.id, **privacy.audit_snapshot(m)})
    return m


def update_member(session: Session, actor: Actor, member_id: int, data: MemberInput) -> Member:
    m = get_member(session, member_id)
    h = get_household(session, m.household_id)
    c = clean_member(data)
    if (c.relation == HEAD) != (m.relation == HEAD):
        raise ValidationFailed("户主要通过“更换户主”来变更", details={"field": "relation"})
    taken = _id_taken(session, c.id_key, except_member=m.id)
    if taken:
        raise Conflict(f"身份证号已登记在{_where_registered(session, taken, h.village_id)}", details={"field": "id_number"})
    before, stored_before = privacy.audit_snapshot(m), privacy.stored_fields(m)
    m.name, m.relation, m.gender, m.birth_date = c.name, c.relation, c.gender, c.birth_date
    m.id_number, m.id_key, m.phone = c.id_number, c.id_key, c.phone
    m.party_member, m.living_away = c.party_member, c.living_away
    m.name_pinyin, m.name_initials = full_pinyin(c.name), initials(c.name)
    m.updated_at = utcnow()
    after = privacy.audit_snapshot(m)
    changed = privacy.changed_fields(stored_before, privacy.stored_fields(m))
    if changed:
        if m.id == h.head_member_id:
            _refresh_head(session, h)
        _event(session, actor, h.id, "member_edited", f"修改成员 {m.name} 的信息", {"member_id": m.id})
        session.flush()
        audit.record(session, actor, "households.member.update", object_type="member", object_id=m.id,
                     before=before, after={**after, "changed_fields": changed})
    return m


def set_member_status(session: Session, actor: Actor, member_id: int, status: str, *, on: date | None = None,
                      reason: str | None = None) -> Member:
    m = get_member(session, member_id)
    h = get_household(session, m.household_id)
    if status not in {s.value for s in MemberStatus}:
        raise ValidationFailed("未知的成员状态", details={"field": "status"})
    if m.status == status:
        return m
    if status != MemberStatus.PRESENT.value and m.id == h.head_member_id:
        raise ValidationFailed("该成员是户主：请先更换户主，再办理迁出或注销")
    when = on or date.today()
    before = m.status
    m.status, m.status_date, m.status_reason = status, when, (reason or "").strip()[:200] or None
    m.updated_at = utcnow()
    if status != MemberStatus.PRESENT.value:
        _end_membership(session, m.id, h.id, when, reason or status)
    else:
        session.add(HouseholdMembership(member_id=m.id, household_id=h.id, relation=m.relation, started_on=when,
                                        reason=reason or "恢复在户"))
    labels = {"present": "恢复在户", "moved_out": "迁出", "deceased": "已故"}
    _event(session, actor, h.id, "member_status", f"{m.name} {labels[status]}" + (f"：{reason}" if reason else ""),
           {"member_id": m.id, "from": before, "to": status})
    session.flush()
    audit.record(session, actor, "households.member.status", object_type="member", object_id=m.id,
                 before={"status": before}, after={"status": status, "on": when, "reason": reason})
    return m


def _end_membership(session: Session, member_id: int, household_id: int, on: date, reason: str) -> None:
    for ms in session.execute(select(HouseholdMembership).where(HouseholdMembership.member_id == member_id,
                                                                HouseholdMembership.household_id == household_id,
                                                                HouseholdMembership.ended_on.is_(None))).scalars():
        ms.ended_on = on
        ms.reason = f"{ms.reason or ''}；{reason}".strip("；")[:200]


def change_head(session: Session, actor: Actor, household_id: int, new_head_id: int, *,
                old_head_relation: str = "其他") -> Household:
    h = get_household(session, household_id)
    new = session.get(Member, new_head_id) if new_head_id else None
    # A missing member and another household's member get the same answer: ids of other villages leak nothing.
    if new is None or new.household_id != h.id or new.status != MemberStatus.PRESENT.value:
        raise ValidationFailed("新户主必须是本户的在户成员", details={"field": "member_id"})
    if new.id == h.head_member_id:
        return h
    if old_head_relation not in RELATIONS or old_head_relation == HEAD:
        raise ValidationFailed("请为原户主选择新的“与户主关系”", details={"field": "old_head_relation"})
    old = session.get(Member, h.head_member_id) if h.head_member_id else None
    if old is not None:
        old.relation = old_head_relation
    new_before = new.relation
    new.relation = HEAD
    h.head_member_id = new.id
    _refresh_head(session, h)
    _event(session, actor, h.id, "head_changed",
           f"户主由 {old.name if old else '（无）'} 变更为 {new.name}", {"from": old.id if old else None, "to": new.id})
    session.flush()
    audit.record(session, actor, "households.head_change", object_type="household", object_id=h.id,
                 before={"head_member_id": old.id if old else None, "new_head_relation": new_before},
                 after={"head_member_id": new.id, "old_head_relation": old_head_relation})
    return h


def move_group(session: Session, actor: Actor, household_id: int, group_id: int | None) -> Household:
    h = get_household(session, household_id)
    g = _check_group(session, h.village_id, group_id)
    if h.group_id == group_id:
        return h
    old = session.get(Group, h.group_id) if h.group_id else None
    before = h.group_id
    h.group_id = group_id
    h.group_sort = g.number if g else NO_GROUP_SORT
    h.updated_at = utcnow()
    _event(session, actor, h.id, "moved_group",
           f"由{old.name if old else '（未分组）'}调整到{g.name if g else '（未分组）'}", {"from": before, "to": group_id})
    session.flush()
    audit.record(session, actor, "households.move_group", object_type="household", object_id=h.id,
                 before={"group_id": before}, after={"group_id": group_id})
    return h


def move_out(session: Session, actor: Actor, household_id: int, *, status: str, on: date | None = None,
             reason: str) -> Household:
    """The whole household leaves the roster: moved out of the village (迁出) or dissolved (注销)."""
    h = get_household(session, household_id)
    if status not in (HouseholdStatus.MOVED_OUT.value, HouseholdStatus.DISSOLVED.value):
        raise ValidationFailed("请选择“迁出”或“注销”", details={"field": "status"})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("请写明原因", details={"field": "reason"})
    if h.status != HouseholdStatus.ACTIVE.value:
        raise Conflict("该户已不在册")
    when = on or date.today()
    h.status, h.status_date, h.status_reason = status, when, reason[:200]
    h.updated_at = utcnow()
    for m in members_of(session, h.id, include_former=False):
        # Nobody stays "present" in a household that left the roster (dissolving one with members moves them out).
        m.status, m.status_date, m.status_reason = MemberStatus.MOVED_OUT.value, when, reason[:200]
        _end_membership(session, m.id, h.id, when, reason)
    label = "迁出" if status == HouseholdStatus.MOVED_OUT.value else "注销"
    _event(session, actor, h.id, status, f"全户{label}：{reason}", {"on": when.isoformat()})
    session.flush()
    audit.record(session, actor, f"households.{status}", object_type="household", object_id=h.id,
                 before={"status": HouseholdStatus.ACTIVE.value}, after={"status": status, "on": when, "reason": reason})
    return h


def next_number(session: Session, village_id: int) -> str:
    """A free household number: one more than the largest all-digit number in the village, same width."""
    numbers = [n for (n,) in session.execute(select(Household.number).where(Household.village_id == village_id))]
    digits = [n for n in numbers if n.isdigit()]
    if not digits:
        return "1"
    width = max(len(n) for n in digits)
    return str(max(int(n) for n in digits) + 1).zfill(width)


def split(session: Session, actor: Actor, household_id: int, *, member_ids: list[int], new_head_id: int,
          new_number: str | None = None, group_id: int | None = None, on: date | None = None,
          reason: str = "分户") -> Household:
    """分户: the chosen members leave for a new household with a new number; both keep their history."""
    h = get_household(session, household_id)
    if h.status != HouseholdStatus.ACTIVE.value:
        raise ValidationFailed("该户已不在册，不能分户")
    present = {m.id: m for m in members_of(session, h.id, include_former=False)}
    chosen = list(dict.fromkeys(member_ids))
    if not chosen:
        raise ValidationFailed("请选择要分出的成员", details={"field": "member_ids"})
    if any(mid not in present for mid in chosen):
        raise ValidationFailed("只能分出本户的在户成员", details={"field": "member_ids"})
    if h.head_member_id in chosen:
        raise ValidationFailed("原户主不能分出；如需要，请先更换户主", details={"field": "member_ids"})
    if len(chosen) == len(present):
        raise ValidationFailed("不能把全部成员都分出去", details={"field": "member_ids"})
    if new_head_id not in chosen:
        raise ValidationFailed("新户的户主必须是分出的成员之一", details={"field": "new_head_id"})
    number = clean_number(new_number) if new_number else next_number(session, h.village_id)
    if session.execute(select(Household.id).where(Household.village_id == h.village_id,
                                                  Household.number == number)).first():
        raise Conflict(f"户号 {number} 已被使用", details={"field": "new_number"})
    target_group = group_id if group_id is not None else h.group_id
    g = _check_group(session, h.village_id, target_group)
    when = on or date.today()
    new = Household(village_id=h.village_id, group_id=target_group, group_sort=g.number if g else NO_GROUP_SORT,
                    number=number, number_sort=number_sort_key(number), address=h.address)
    session.add(new)
    session.flush()
    for mid in chosen:
        m = present[mid]
        _end_membership(session, m.id, h.id, when, f"分户至户号 {number}")
        m.household_id = new.id
        m.relation = HEAD if mid == new_head_id else (m.relation if m.relation != HEAD else "其他")
        m.updated_at = utcnow()
        session.add(HouseholdMembership(member_id=m.id, household_id=new.id, relation=m.relation, started_on=when,
                                        reason=f"由户号 {h.number} 分户"))
    new.head_member_id = new_head_id
    session.flush()
    _refresh_head(session, new)
    _refresh_head(session, h)
    names = "、".join(present[m].name for m in chosen)
    _event(session, actor, h.id, "split", f"分户：{names} 分出为新户 {number}", {"new_household_id": new.id,
                                                                             "member_ids": chosen})
    _event(session, actor, new.id, "created", f"由户号 {h.number} 分户建立：{names}", {"from_household_id": h.id,
                                                                                 "reason": reason})
    session.flush()
    audit.record(session, actor, "households.split", object_type="household", object_id=h.id,
                 after={"new_household_id": new.id, "new_number": number, "member_ids": chosen, "reason": reason})
    return new


def merge(session: Session, actor: Actor, source_id: int, target_id: int, *, on: date | None = None,
          reason: str = "合户", relations: dict[int, str] | None = None) -> Household:
    """合户: every present member of the source household joins the target; the source is dissolved."""
    src = get_household(session, source_id)
    dst = session.get(Household, target_id)
    if dst is None or src.village_id != dst.village_id:  # the same answer for both: other villages leak nothing
        raise ValidationFailed("目标户不存在或不在本村：只能合并同一村的农户", details={"field": "target_id"})
    if src.id == dst.id:
        raise ValidationFailed("不能与自己合户")
    if src.status != HouseholdStatus.ACTIVE.value or dst.status != HouseholdStatus.ACTIVE.value:
        raise ValidationFailed("两户都必须在册")
    when = on or date.today()
    relations = relations or {}
    moved = members_of(session, src.id, include_former=False)
    for m in moved:
        rel = relations.get(m.id) or (m.relation if m.relation != HEAD else "其他")
        if rel not in RELATIONS or rel == HEAD:
            raise ValidationFailed(f"{m.name} 的新“与户主关系”不合法", details={"field": "relations"})
        _end_membership(session, m.id, src.id, when, f"并入户号 {dst.number}")
        m.household_id, m.relation, m.updated_at = dst.id, rel, utcnow()
        session.add(HouseholdMembership(member_id=m.id, household_id=dst.id, relation=rel, started_on=when,
                                        reason=f"由户号 {src.number} 并入"))
    src.status, src.status_date, src.status_reason = HouseholdStatus.DISSOLVED.value, when, f"并入户号 {dst.number}"
    src.head_member_id = None
    session.flush()
    _refresh_head(session, src)
    _refresh_head(session, dst)
    names = "、".join(m.name for m in moved)
    _event(session, actor, src.id, "merged_into", f"并入户号 {dst.number}：{names}", {"target_id": dst.id})
    _event(session, actor, dst.id, "merged_from", f"户号 {src.number} 并入本户：{names}", {"source_id": src.id})
    session.flush()
    audit.record(session, actor, "households.merge", object_type="household", object_id=dst.id,
                 after={"source_id": src.id, "member_ids": [m.id for m in moved], "reason": reason})
    return dst


def find_by_number(session: Session, village_id: int, number: str) -> Household:
    h = session.execute(select(Household).where(Household.village_id == village_id,
                                                Household.number == (number or "").strip())).scalar_one_or_none()
    if h is None:
        raise ValidationFailed(f"本村没有户号 {number}", details={"field": "number"})
    return h
