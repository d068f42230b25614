"""Roster import: preview every problem by row and column, then apply all-or-nothing in one transaction.

A preview is three steps, so that the slow one holds nothing: `read_file` parses and checks the file on its own (no
database: a route runs it outside any transaction), `check` compares it with the roster (reads only), `keep` stores
the result as a batch awaiting confirmation (a short write). `preview` does all three in the caller's transaction.
A preview lists the first MAX_PROBLEMS problems and counts the rest (a 200,000-row file with a problem on every row
must not make a 30 MB page).

Nothing is written to the roster before the clerk confirms. The same file imported twice changes nothing the second
time; a corrected file updates households (matched by 户号) and members (by ID number, else by name in the household)
in place. Writes are set-based (executemany), not a query per row.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.pinyin import full_pinyin, initials
from app.core.text import bad_character, visible
from app.errors import Conflict, NotFound, ValidationFailed, get_or_not_found
from app.households.models import HEAD, NO_GROUP_SORT, Household, HouseholdEvent, HouseholdMembership, ImportBatch, Member
from app.households.service import roster
from app.households.service.households import MemberInput, clean_member, clean_number, clean_phone, number_sort_key
from app.org import service as org
from app.org.models import Group, Village

FIELD_LABEL = {k: v[0] for k, v in roster.COLUMNS.items()}
MAX_PROBLEMS = 200  # listed in a preview; the rest are counted in one closing line


@dataclass
class Plan:
    rows: list[dict[str, Any]]
    problems: list[roster.Problem]
    missing_groups: list[int] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    # filled by _plan(): what would change
    new_households: list[str] = field(default_factory=list)
    changed_households: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_members: list[dict[str, Any]] = field(default_factory=list)
    changed_members: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    changed_member_numbers: set[str] = field(default_factory=set)
    head_changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # existing heads whose name changes

    @property
    def errors(self) -> list[roster.Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _col(sheet_headers: dict[str, str], key: str) -> str:
    return sheet_headers.get(key, FIELD_LABEL[key])


def parse_rows(sheet: roster.Sheet, *, today: date | None = None) -> tuple[list[dict[str, Any]], list[roster.Problem]]:
    """Every row checked on its own and against the others (no database). Returns normalized rows (JSON-safe)."""
    problems = list(sheet.problems)
    out: list[dict[str, Any]] = []
    rejected_heads: set[str] = set()  # households whose head's row has its own error (so not "no head")
    h = sheet.headers
    for row_no, values in sheet.rows:
        bad = False
        if roster.text(values.get("relation")) in (HEAD, "本人"):
            rejected_heads.add(roster.text(values.get("number")))

        def problem(key: str, message: str, code: str, row_no: int = row_no) -> None:
            nonlocal bad
            bad = True
            problems.append(roster.Problem(row_no, _col(h, key), message, "error", code))

        hidden = [(key, what) for key, value in values.items()
                  if isinstance(value, str) and (what := bad_character(value))]
        if hidden:  # refused on the way in as on PostgreSQL; the other checks would quote the cell back
            for key, what in hidden:
                problem(key, f"{FIELD_LABEL[key]}里有{what}：请在表格里删去后重新上传", "bad_character")
            continue
        number = roster.text(values.get("number"))
        try:
            number = clean_number(number)
        except ValidationFailed as e:
            problem("number", e.message if number else "户号没有填写", "number")
        birth = None
        try:
            birth = roster.parse_date(values.get("birth_date"))
        except ValueError:
            problem("birth_date", f"出生日期“{roster.text(values.get('birth_date'))}”看不懂，请写成 1980-01-31", "date")
        flags: dict[str, bool] = {}
        for key in ("party_member", "living_away"):
            try:
                flags[key] = roster.parse_flag(values.get(key))
            except ValueError:
                flags[key] = False
                problem(key, f"{FIELD_LABEL[key]}“{roster.text(values.get(key))}”请填“是”或“否”", "flag")
        raw_id = values.get("id_number")
        try:
            c = clean_member(MemberInput(
                name=roster.text(values.get("name")), relation=roster.text(values.get("relation")),
                gender=roster.text(values.get("gender")) or None, birth_date=birth,
                id_number=raw_id if isinstance(raw_id, float | int) else roster.text(raw_id),
                phone=roster.text(values.get("phone")) or None, **flags), today=today)
        except ValidationFailed as e:
            key = (e.details or {}).get("field", "name")
            problem(key if key in FIELD_LABEL else "name", e.message, f"member_{key}")
            continue
        group_text = roster.text(values.get("group"))
        group_num = roster.group_number(group_text)
        if group_text and group_num is None:
            problem("group", f"村民小组“{group_text}”看不出是第几组，请写成 3 或 第三村民小组", "group")
        elif group_num is not None and not 1 <= group_num <= 999:
            problem("group", f"村民小组“{group_text[:20]}”的编号须在 1 到 999 之间", "group")
        if bad:
            continue
        out.append({"row": row_no, "number": number, "group": group_num, "group_text": group_text, "name": c.name,
                    "relation": c.relation, "gender": c.gender,
                    "birth_date": c.birth_date.isoformat() if c.birth_date else None,
                    "id_number": c.id_number, "id_key": c.id_key, "phone": c.phone, "party_member": c.party_member,
                    "living_away": c.living_away, "address": roster.text(values.get("address"))[:200] or None,
                    "notes": roster.text(values.get("notes"))[:500] or None})
    # across rows
    by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in out:
        by_number[r["number"]].append(r)
    seen_keys: dict[str, int] = {}
    for r in out:
        if r["id_key"]:
            if r["id_key"] in seen_keys:
                problems.append(roster.Problem(r["row"], _col(h, "id_number"),
                                               f"身份证号与第 {seen_keys[r['id_key']]} 行重复", "error", "duplicate_id"))
            else:
                seen_keys[r["id_key"]] = r["row"]
    for number, members in by_number.items():
        heads = [m for m in members if m["relation"] == HEAD]
        if heads:
            rejected_heads.discard(number)
        rows_text = "、".join(str(m["row"]) for m in members[:8]) + ("…" if len(members) > 8 else "")
        if not heads and number not in rejected_heads:
            problems.append(roster.Problem(
                members[0]["row"], _col(h, "relation"),
                f"户号 {number}（第 {rows_text} 行）没有户主：请把其中一人的“与户主关系”填为“户主”", "error", "no_head"))
        elif len(heads) > 1:
            head_rows = "、".join(str(x["row"]) for x in heads)
            problems.append(roster.Problem(
                heads[1]["row"], _col(h, "relation"),
                f"户号 {number} 有 {len(heads)} 位户主（第 {head_rows} 行），一户只能有一位户主；如果是两户，请使用不同的户号",
                "error", "two_heads"))
        groups = {m["group"] for m in members}
        if len(groups) > 1:
            problems.append(roster.Problem(members[0]["row"], _col(h, "group"),
                                           f"户号 {number} 的成员填了不同的村民小组（第 {rows_text} 行）："
                                           "同一户只能属于一个小组；如果其实是两户，说明户号重复了", "error", "duplicate_number"))
        names: dict[str, int] = {}
        for m in members:
            if not m["id_key"]:
                if m["name"] in names:
                    problems.append(roster.Problem(
                        m["row"], _col(h, "name"),
                        f"户号 {number} 里“{m['name']}”出现了两次（第 {names[m['name']]} 行）且没有身份证号，无法区分",
                        "error", "duplicate_member"))
                names[m["name"]] = m["row"]
    return out, problems


def _plan(session: Session, village: Village, rows: list[dict[str, Any]], problems: list[roster.Problem],
          headers: dict[str, str]) -> Plan:
    plan = Plan(rows=rows, problems=problems)
    groups = {g.number: g for g in session.execute(select(Group).where(Group.village_id == village.id)).scalars()}
    missing = sorted({r["group"] for r in rows if r["group"] is not None and r["group"] not in groups})
    plan.missing_groups = missing
    for n in missing:
        first = next(r for r in rows if r["group"] == n)
        problems.append(roster.Problem(first["row"], _col(headers, "group"),
                                       f"本村还没有第 {n} 组（“{first['group_text']}”）："
                                       "确认导入时可以勾选“同时新建缺少的村民小组”",
                                       "warning", "unknown_group"))
    inactive = sorted({r["group"] for r in rows if r["group"] in groups and not groups[r["group"]].active})
    for n in inactive:
        first = next(r for r in rows if r["group"] == n)
        problems.append(roster.Problem(first["row"], _col(headers, "group"), f"{groups[n].name}已停用", "error",
                                       "inactive_group"))
    # Plain rows, not ORM objects: a village may hold tens of thousands of members, and nothing here is modified.
    hh_cols = select(*Household.__table__.c)
    m_cols = select(*Member.__table__.c)
    existing: dict[str, Any] = {h.number: h for h in session.execute(hh_cols.where(Household.village_id == village.id))}
    hh_by_id = {h.id: h for h in existing.values()}
    existing_members: dict[int, list[Any]] = defaultdict(list)
    by_key: dict[str, Any] = {}
    if existing:
        for em in session.execute(m_cols.where(Member.village_id == village.id)):
            existing_members[em.household_id].append(em)
            if em.id_key:
                by_key[em.id_key] = em
    # ID numbers not registered in this village may be registered in another one: only those are looked up.
    keys = [r["id_key"] for r in rows if r["id_key"] and r["id_key"] not in by_key]
    for i in range(0, len(keys), 900):
        for found in session.execute(m_cols.where(Member.id_key.in_(keys[i:i + 900]))):
            by_key[found.id_key] = found
    by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_number[r["number"]].append(r)
    counts = {"households_new": 0, "households_updated": 0, "households_unchanged": 0, "members_new": 0,
              "members_updated": 0, "members_unchanged": 0, "rows": len(rows)}
    member_fields = ("name", "relation", "gender", "birth_date", "id_number", "id_key", "phone", "party_member",
                     "living_away")
    for number, members in by_number.items():
        hh = existing.get(number)
        head_row = next((m for m in members if m["relation"] == HEAD), members[0])
        group_id = groups[head_row["group"]].id if head_row["group"] in groups else None
        hh_changes: dict[str, Any] = {}
        if hh is None:
            plan.new_households.append(number)
            counts["households_new"] += 1
        else:
            if hh.status != "active":
                problems.append(roster.Problem(head_row["row"], _col(headers, "number"),
                                               f"户号 {number} 已迁出或注销，不能再导入成员；如是新户，请换一个户号",
                                               "error", "inactive_household"))
                continue
            wanted = {"group_id": group_id if head_row["group"] is not None else hh.group_id,
                      "address": head_row["address"] or hh.address,
                      "phone": head_row["phone"] if head_row["phone"] else hh.phone}
            if head_row["group"] is not None and group_id is None:
                wanted["group_id"] = None  # a group to be created: resolved at apply time
                hh_changes["_group_number"] = head_row["group"]
            for k, v in wanted.items():
                if getattr(hh, k) != v:
                    hh_changes[k] = v
        current = {m.id: m for m in existing_members.get(hh.id, [])} if hh else {}
        # a row without an ID number is the person of that name in the household (preferring one without an ID)
        by_name = {m.name: m for m in sorted(current.values(), key=lambda x: x.id_key is None)}
        any_member_change = False
        for r in members:
            m: Any = by_key.get(r["id_key"]) if r["id_key"] else None
            if m is not None and (hh is None or m.household_id != hh.id):
                if m.household_id in hh_by_id:
                    where = f"本村户号 {hh_by_id[m.household_id].number}：一人只能在一户；如要转户，请在系统里办理分户或合户"
                else:  # another village's roster is not told: only that the number is taken
                    where = "其他村：如需转入本村，请先由原村办理迁出；有疑问请联系县管理员"
                problems.append(roster.Problem(r["row"], _col(headers, "id_number"),
                                               f"{r['name']} 的身份证号已登记在{where}", "error", "member_elsewhere"))
                continue
            if m is None and not r["id_key"]:
                m = by_name.get(r["name"])
            if m is None and r["id_key"]:
                same_name = [x for x in current.values() if x.name == r["name"] and not x.id_key]
                m = same_name[0] if same_name else None
            if hh is not None and ((m is None and r["relation"] == HEAD)
                                   or (m is not None and (m.id == hh.head_member_id) != (r["relation"] == HEAD))):
                # Changing the head is a household change with its own history, not a cell in a file.
                problems.append(roster.Problem(r["row"], _col(headers, "relation"),
                                               f"户号 {number} 的户主与系统中不同（系统中为 {hh.head_name}）："
                                               "更换户主请先在系统里办理，再导入", "error", "head_changed"))
                continue
            if m is None:
                plan.new_members.append(r)
                counts["members_new"] += 1
                any_member_change = True
                continue
            birth = date.fromisoformat(r["birth_date"]) if r["birth_date"] else None
            wanted_m = {**{k: r[k] for k in member_fields}, "birth_date": birth}
            # a blank cell or a column the file does not have erases nothing (as for the household's phone)
            wanted_m = {k: v for k, v in wanted_m.items()
                        if v is not None and (k not in ("party_member", "living_away") or k in headers)}
            diff = {k: v for k, v in wanted_m.items() if getattr(m, k) != v}
            if diff:
                if "name" in diff:
                    diff["name_pinyin"], diff["name_initials"] = full_pinyin(r["name"]), initials(r["name"])
                plan.changed_members.append((m.id, diff))
                plan.changed_member_numbers.add(number)
                counts["members_updated"] += 1
                any_member_change = True
            else:
                counts["members_unchanged"] += 1
            if r["relation"] == HEAD and hh is not None and "name" in diff:  # the head's corrected name
                plan.head_changes[number] = {"member_id": m.id, "name": r["name"]}
        if hh is not None:
            if hh_changes:
                plan.changed_households[number] = hh_changes
            if hh_changes or any_member_change:
                counts["households_updated"] += 1
            else:
                counts["households_unchanged"] += 1
    plan.summary = counts
    return plan


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Parsed:
    """An uploaded file read and checked on its own, row by row and across rows (no database)."""

    file_name: str
    sha256: str
    headers: dict[str, str]
    rows: list[dict[str, Any]]
    problems: list[roster.Problem]


def read_file(file_name: str, data: bytes, *, today: date | None = None) -> Parsed:
    """Read and check the file without the database: the slow part of a preview (seconds for a large file), which
    a route runs outside any transaction. Raises ValidationFailed for a file that is not a roster at all."""
    sheet = roster.read_sheet(file_name, data)
    rows, problems = parse_rows(sheet, today=today)
    return Parsed(file_name=visible(file_name or "")[:200], sha256=_sha256(data), headers=sheet.headers, rows=rows,
                  problems=problems)


def check(session: Session, *, village_id: int, parsed: Parsed) -> Plan:
    """The parsed file against the village's roster as it is now: what would change, and the problems. Reads only."""
    village = get_or_not_found(session, Village, village_id)
    return _plan(session, village, parsed.rows, parsed.problems, parsed.headers)


def _listed(problems: list[roster.Problem]) -> list[dict[str, Any]]:
    """The first MAX_PROBLEMS problems, and one closing line counting the rest."""
    listed = [p.as_dict() for p in problems[:MAX_PROBLEMS]]
    hidden = problems[MAX_PROBLEMS:]
    if hidden:
        hidden_errors = sum(1 for p in hidden if p.severity == "error")
        listed.append(roster.Problem(
            None, None, f"……另有 {len(hidden)} 处问题未列出（其中 {hidden_errors} 处必须改正）：请先改正上面列出的问题，"
                        "再重新上传，余下的问题会再列出", "error" if hidden_errors else "warning", "more_problems").as_dict())
    return listed


def keep(session: Session, actor: Actor, *, village_id: int, parsed: Parsed, plan: Plan) -> ImportBatch:
    """Keep the checked file as a batch awaiting confirmation: a short write (the batch and its audit event)."""
    errors = sum(1 for p in plan.problems if p.severity == "error")
    counted = {"errors": errors, "warnings": len(plan.problems) - errors}
    batch = ImportBatch(village_id=village_id, user_id=actor.user_id, file_name=parsed.file_name,
                        file_sha256=parsed.sha256, rows=plan.rows, problems=_listed(plan.problems),
                        summary={**plan.summary, **counted, "missing_groups": plan.missing_groups,
                                 "headers": parsed.headers})
    session.add(batch)
    session.flush()
    audit.record(session, actor, "households.import.preview", object_type="village", object_id=village_id,
                 after={"batch_id": batch.id, "file": batch.file_name, "sha256": batch.file_sha256, "errors": errors,
                        **plan.summary})
    return batch


def preview(session: Session, actor: Actor, *, village_id: int, file_name: str, data: bytes,
            today: date | None = None) -> ImportBatch:
    """Read and check the file; keep the result as a batch awaiting confirmation. Writes no roster row. All in the
    caller's transaction (the CLI, the demo, tests): a route runs the three steps apart (see the module)."""
    get_or_not_found(session, Village, village_id)
    parsed = read_file(file_name, data, today=today)
    return keep(session, actor, village_id=village_id, parsed=parsed,
                plan=check(session, village_id=village_id, parsed=parsed))


def get_batch(session: Session, batch_id: int, village_id: int) -> ImportBatch:
    b = session.get(ImportBatch, batch_id)
    if b is None or b.village_id != village_id:
        raise NotFound()
    return b


def apply(session: Session, actor: Actor, *, village_id: int, batch_id: int, create_missing_groups: bool = False,
          today: date | None = None) -> dict[str, Any]:
    """Write the confirmed batch, all or nothing (the caller's transaction). The plan is recomputed against the
    current roster, so a change made since the preview is noticed rather than overwritten."""
    batch = get_batch(session, batch_id, village_id)
    # Claim the batch with a conditional update: of two confirmations racing, exactly one goes on.
    claimed = session.execute(update(ImportBatch).where(ImportBatch.id == batch_id, ImportBatch.status == "preview")
                              .values(status="applying").execution_options(synchronize_session=False)).rowcount
    if batch.status != "preview" or claimed != 1:
        raise Conflict("这批数据已经处理过了（已导入或已放弃），请重新上传文件")
    village = session.get(Village, village_id)
    assert village is not None
    headers = batch.summary.get("headers", {})
    file_problems = [roster.Problem(**p) for p in batch.problems if p["code"] in
                     ("ignored_columns",) or p["severity"] == "error"]
    plan = _plan(session, village, batch.rows, [p for p in file_problems if p.severity == "error"], headers)
    errors = plan.errors
    if errors:
        # the preview listed MAX_PROBLEMS and counted the rest: the count it gave, if larger
        total = max(len(errors), int(batch.summary.get("errors", 0)))
        raise ValidationFailed(f"还有 {total} 个问题没有解决，未导入任何数据。请改正后重新上传",
                               details=[p.as_dict() for p in errors[:MAX_PROBLEMS]])
    if plan.missing_groups and not create_missing_groups:
        raise ValidationFailed("表中有本村还没有的村民小组：请勾选“同时新建缺少的村民小组”，或改正表格后重新上传",
                               details={"missing_groups": plan.missing_groups})
    today = today or date.today()
    now = utcnow()
    for n in plan.missing_groups:
        org.create_group(session, actor, village_id=village_id, number=n)
    groups = {g.number: g.id for g in session.execute(select(Group).where(Group.village_id == village_id)).scalars()}
    group_numbers = {gid: number for number, gid in groups.items()}
    by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in batch.rows:
        by_number[r["number"]].append(r)

    # 1. new households
    number_to_id = {n: i for n, i in session.execute(select(Household.number, Household.id)
                                                     .where(Household.village_id == village_id))}
    if plan.new_households:
        values = []
        for number in plan.new_households:
            members = by_number[number]
            head = next(m for m in members if m["relation"] == HEAD)
            values.append({"village_id": village_id, "group_id": groups.get(head["group"]),
                           "group_sort": head["group"] if head["group"] in groups else NO_GROUP_SORT, "number": number,
                           "number_sort": number_sort_key(number), "head_name": head["name"],
                           "head_pinyin": full_pinyin(head["name"]), "address": head["address"],
                           "phone": clean_phone(head["phone"]), "notes": head["notes"], "status": "active",
                           "created_at": now, "updated_at": now})
        # Plain executemany (no RETURNING: SQLAlchemy's batched RETURNING splices results quadratically), then one
        # query for the new ids.
        session.execute(insert(Household.__table__), values)
        number_to_id = {n: i for n, i in session.execute(select(Household.number, Household.id)
                                                         .where(Household.village_id == village_id))}
    # 2. changed households
    if plan.changed_households:
        updates = []
        for number, ch in plan.changed_households.items():
            ch = dict(ch)
            gnum = ch.pop("_group_number", None)
            if gnum is not None:
                ch["group_id"] = groups[gnum]
            if "group_id" in ch:
                ch["group_sort"] = group_numbers.get(ch["group_id"], NO_GROUP_SORT)
            updates.append({"id": number_to_id[number], **ch, "updated_at": now})
        session.execute(update(Household), updates)
    # 3. new members and their membership periods
    head_for: dict[int, tuple[int, str]] = {number_to_id[n]: (hc["member_id"], hc["name"])
                                            for n, hc in plan.head_changes.items()}
    changed_ids: set[int] = set(head_for)
    if plan.new_members:
        values = []
        for r in plan.new_members:
            values.append({"household_id": number_to_id[r["number"]], "village_id": village_id, "name": r["name"],
                           "name_pinyin": full_pinyin(r["name"]), "name_initials": initials(r["name"]),
                           "relation": r["relation"], "gender": r["gender"],
                           "birth_date": date.fromisoformat(r["birth_date"]) if r["birth_date"] else None,
                           "id_number": r["id_number"], "id_key": r["id_key"], "phone": r["phone"],
                           "party_member": r["party_member"], "living_away": r["living_away"], "status": "present",
                           "created_at": now, "updated_at": now})
        last_id = session.execute(select(func.max(Member.id))).scalar() or 0
        session.execute(insert(Member.__table__), values)
        new_ids = list(session.execute(select(Member.id).where(Member.village_id == village_id, Member.id > last_id)
                                       .order_by(Member.id)).scalars())
        if len(new_ids) != len(values):  # another writer added members to this village meanwhile
            raise Conflict("导入时本村的花名册被同时修改了，请重新上传")
        session.execute(insert(HouseholdMembership.__table__), [
            {"member_id": mid, "household_id": v["household_id"], "relation": v["relation"], "started_on": today,
             "reason": f"导入花名册（{batch.file_name}）"[:200]} for mid, v in zip(new_ids, values, strict=True)])
        changed_ids.update(v["household_id"] for v in values)
    if plan.new_households:
        # New households got the head's name at insert; the head's member id is filled in one set-based statement.
        head_of = select(func.min(Member.id)).where(Member.household_id == Household.id, Member.relation == HEAD)
        session.execute(update(Household).where(Household.village_id == village_id, Household.head_member_id.is_(None),
                                                Household.status == "active")
                        .values(head_member_id=head_of.scalar_subquery()).execution_options(synchronize_session=False))
    # 4. changed members
    if plan.changed_members:
        session.execute(update(Member), [{"id": mid, **diff, "updated_at": now} for mid, diff in plan.changed_members])
        changed_ids.update(number_to_id[n] for n in plan.changed_member_numbers)
    # 5. a head's corrected name (the name and its pinyin are kept on the household for sorting and lists)
    if head_for:
        session.execute(update(Household), [{"id": hid, "head_member_id": mid, "head_name": name,
                                             "head_pinyin": full_pinyin(name)} for hid, (mid, name) in head_for.items()])
    # 6. history and audit
    created = {number_to_id[n] for n in plan.new_households}
    changed_ids.update(number_to_id[n] for n in plan.changed_households)
    events = [{"household_id": hid, "kind": "created", "description": f"导入花名册建户（{batch.file_name}）"[:500],
               "details": {"batch_id": batch.id}, "actor_id": actor.user_id, "actor_name": actor.name, "at": now}
              for hid in sorted(created)]
    events += [{"household_id": hid, "kind": "imported", "description": f"导入花名册更新（{batch.file_name}）"[:500],
                "details": {"batch_id": batch.id}, "actor_id": actor.user_id, "actor_name": actor.name, "at": now}
               for hid in sorted(changed_ids - created)]
    if events:
        session.execute(insert(HouseholdEvent.__table__), events)
    if session.get_bind().dialect.name == "postgresql" and len(plan.new_members) > 1000:
        # Fresh statistics after a bulk load, or the next lookups are planned for the old, small tables.
        session.execute(text("ANALYZE households, members, household_memberships"))
    result = {**plan.summary, "groups_created": len(plan.missing_groups)}
    # The parsed rows held full ID numbers and phones only to be confirmed: they are not kept afterwards.
    session.execute(update(ImportBatch).where(ImportBatch.id == batch.id).values(
        status="applied", applied_at=now, rows=[], summary={**batch.summary, "applied": result}))
    session.expire(batch)
    session.flush()
    audit.record(session, actor, "households.import", object_type="village", object_id=village_id,
                 after={"batch_id": batch.id, "file": batch.file_name, "sha256": batch.file_sha256, **result})
    return result


def discard(session: Session, actor: Actor, *, village_id: int, batch_id: int) -> None:
    batch = get_batch(session, batch_id, village_id)
    if batch.status == "preview":
        batch.status = "discarded"
        batch.rows = []  # nothing of the file is kept
        session.flush()
        audit.record(session, actor, "households.import.discard", object_type="village", object_id=village_id,
                     after={"batch_id": batch.id, "file": batch.file_name})
