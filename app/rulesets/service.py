"""Rulesets (积分细则): import a version (TOML, validated by the rules engine), export it, assign a ruleset code to
the county or to a village from a month on, and find the version that applies to a village in a month.

Services flush, never commit. Every change is audited.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import rules
from app.audit import service as audit
from app.core.clock import to_local, utcnow
from app.core.context import Actor
from app.core.month import month_label, month_of
from app.errors import Conflict, NotFound, ValidationFailed
from app.org.models import Village
from app.rules.validate import valid_month
from app.rulesets.models import RulesetAssignment, RulesetVersion

TOML_MEDIA = "application/toml; charset=utf-8"
MAX_TOML_BYTES = 256 * 1024


@dataclass(frozen=True)
class StoredRuleset:
    row: RulesetVersion
    ruleset: rules.Ruleset


def _check_month(month: int, field: str) -> None:
    if not valid_month(month):
        raise ValidationFailed(f"月份 {month} 无效，应写成 202611 这样的六位数字", details={"field": field})


def import_toml(session: Session, actor: Actor, text: str | bytes) -> RulesetVersion:
    """Store a new version from a TOML file. Refused, with every problem in Chinese, when the file does not validate
    or when its version is not higher than the stored versions of the same code."""
    return store(session, actor, read_toml(text))


class RulesRefused(ValidationFailed):
    """The rules engine's own refusal (`rules.RulesError`: an invalid ruleset, or ratings that do not fit it) as the
    application's: HTTP 422 with the engine's code and message, every problem in `details["problems"]` and `problems`."""

    def __init__(self, e: rules.RulesError) -> None:
        super().__init__(e.message, code=e.code, details={"problems": list(e.problems)})
        self.problems = e.problems


@contextmanager
def engine_errors() -> Iterator[None]:
    """Around every call into the rules engine that may refuse its input: the one place its errors become the
    application's (the engine itself imports nothing of the application)."""
    try:
        yield
    except rules.RulesError as e:
        raise RulesRefused(e) from e


def read_toml(text: str | bytes) -> rules.Ruleset:
    """A TOML file read and validated on its own (no database): a route does this outside any transaction."""
    if len(text) > MAX_TOML_BYTES:
        raise ValidationFailed(f"积分细则文件太大（超过 {MAX_TOML_BYTES // 1024} KB）")
    with engine_errors():
        return rules.loads(text)


def store(session: Session, actor: Actor, r: rules.Ruleset) -> RulesetVersion:
    """Store a read ruleset as a new version: refused when its version is not higher than the stored versions of
    the same code."""
    top = session.execute(select(func.max(RulesetVersion.version)).where(RulesetVersion.code == r.code)).scalar()
    if top is not None and r.version <= top:
        raise Conflict(f"积分细则 {r.code} 已有第 {top} 版：新版本号须大于 {top}（改文件里的 version）",
                       details={"field": "version"})
    row = RulesetVersion(code=r.code, version=r.version, name=r.name, effective_from=r.effective_from,
                         toml=rules.dumps(r), created_by=actor.name[:80])
    session.add(row)
    session.flush()
    audit.record(session, actor, "ruleset.import", object_type="ruleset", object_id=row.id,
                 after={"code": r.code, "version": r.version, "effective_from": r.effective_from, "name": r.name})
    return row


@lru_cache(maxsize=32)
def parse(text: str) -> rules.Ruleset:
    """A stored version's TOML, parsed once per process (versions are immutable; the text is the key)."""
    with engine_errors():
        return rules.loads(text)


def get(session: Session, code: str, version: int) -> StoredRuleset:
    row = session.execute(select(RulesetVersion).where(RulesetVersion.code == code,
                                                       RulesetVersion.version == version)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"没有积分细则 {code} 第 {version} 版")
    return StoredRuleset(row, parse(row.toml))


def list_versions(session: Session) -> list[RulesetVersion]:
    return list(session.execute(select(RulesetVersion).order_by(RulesetVersion.code,
                                                                RulesetVersion.version.desc())).scalars())


def export_file(session: Session, code: str, version: int) -> tuple[bytes, str, str]:
    """(content, file name, media type): the version's TOML exactly as stored."""
    stored = get(session, code, version)
    return stored.row.toml.encode("utf-8"), f"积分细则-{code}-第{version}版.toml", TOML_MEDIA


def assign(session: Session, actor: Actor, *, code: str, from_month: int,
           village_id: int | None = None) -> RulesetAssignment:
    """From `from_month` on, the county (village_id None) or one village uses ruleset `code`."""
    _check_month(from_month, "from_month")
    if session.execute(select(RulesetVersion.id).where(RulesetVersion.code == code).limit(1)).first() is None:
        raise ValidationFailed(f"没有代码为 {code} 的积分细则，请先导入", details={"field": "code"})
    if village_id is not None and session.get(Village, village_id) is None:
        raise ValidationFailed("所选的村不存在", details={"field": "village_id"})
    row = session.execute(select(RulesetAssignment).where(RulesetAssignment.village_id.is_(None) if village_id is None
                                                          else RulesetAssignment.village_id == village_id,
                                                          RulesetAssignment.from_month == from_month)
                          ).scalar_one_or_none()
    before = {"code": row.code} if row else None
    if row is None:
        row = RulesetAssignment(village_id=village_id, code=code, from_month=from_month, created_by=actor.name[:80])
    else:
        row.code = code
    session.add(row)
    session.flush()
    audit.record(session, actor, "ruleset.assign", object_type="village" if village_id else "county",
                 object_id=village_id, before=before, after={"code": code, "from_month": from_month})
    return row


def assignments(session: Session) -> list[RulesetAssignment]:
    return list(session.execute(select(RulesetAssignment).order_by(RulesetAssignment.village_id.is_not(None),
                                                                   RulesetAssignment.village_id,
                                                                   RulesetAssignment.from_month)).scalars())


def applicable(session: Session, village_id: int, month: int) -> StoredRuleset:
    """The version a village uses in a month: its own assignment (latest from_month <= month), else the county's;
    of that code, the highest version whose effective_from <= month."""
    _check_month(month, "month")
    code = None
    for where in (RulesetAssignment.village_id == village_id, RulesetAssignment.village_id.is_(None)):
        code = session.execute(select(RulesetAssignment.code).where(where, RulesetAssignment.from_month <= month)
                               .order_by(RulesetAssignment.from_month.desc()).limit(1)).scalar()
        if code is not None:
            break
    if code is None:
        raise NotFound(f"{month_label(month)}没有适用的积分细则：请县管理员导入细则并指定给全县或本村")
    row = session.execute(select(RulesetVersion).where(RulesetVersion.code == code,
                                                       RulesetVersion.effective_from <= month)
                          .order_by(RulesetVersion.effective_from.desc(), RulesetVersion.version.desc())
                          .limit(1)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"积分细则 {code} 在{month_label(month)}还没有生效的版本")
    return StoredRuleset(row, parse(row.toml))


def coverage_targets(session: Session, village_ids: Sequence[int], month: int, default: int = 60) -> dict[int, int]:
    """Each village's coverage target (%) under the ruleset in force in `month`, reading the assignments and versions
    once (they are few) instead of once per village; `default` where no ruleset applies."""
    assignments = session.execute(select(RulesetAssignment).where(RulesetAssignment.from_month <= month)
                                  .order_by(RulesetAssignment.from_month)).scalars().all()
    county = [a.code for a in assignments if a.village_id is None]
    own: dict[int, str] = {a.village_id: a.code for a in assignments if a.village_id is not None}
    targets: dict[str, int] = {}
    out: dict[int, int] = {}
    for vid in village_ids:
        code = own.get(vid) or (county[-1] if county else None)
        if code is None:
            out[vid] = default
            continue
        if code not in targets:
            row = session.execute(select(RulesetVersion).where(RulesetVersion.code == code,
                                                               RulesetVersion.effective_from <= month)
                                  .order_by(RulesetVersion.effective_from.desc(), RulesetVersion.version.desc())
                                  .limit(1)).scalar_one_or_none()
            targets[code] = parse(row.toml).coverage_target_pct if row is not None else default
        out[vid] = targets[code]
    return out


def ensure_default(session: Session, actor: Actor, *, from_month: int) -> RulesetVersion:
    """The county default ruleset (rules.default_ruleset()) as version 1 for the whole county, if none is stored."""
    existing = session.execute(select(RulesetVersion).order_by(RulesetVersion.id).limit(1)).scalar_one_or_none()
    if existing is not None:
        return existing
    row = import_toml(session, actor, rules.dumps(replace(rules.default_ruleset(), effective_from=from_month)))
    assign(session, actor, code=row.code, from_month=from_month)
    return row


def point_value(session: Session, village_id: int, year: int) -> int | None:
    """What one point is worth (fen) for the village in `year`: under the ruleset in force this month, or in
    December of a past year; None where no ruleset applies. The finance page, the accounts notice and the portal
    all read it here."""
    local = to_local(utcnow()) or utcnow()
    found = in_force(session, village_id, min(month_of(local), year * 100 + 12))
    return found.ruleset.point_value_fen if found is not None else None


def in_force(session: Session, village_id: int, month: int) -> StoredRuleset | None:
    """The version a village uses in a month (as `applicable`), or None where none applies (no ruleset assigned or
    effective yet, or a month outside the rules' years)."""
    if not valid_month(month):
        return None
    try:
        return applicable(session, village_id, month)
    except NotFound:
        return None
