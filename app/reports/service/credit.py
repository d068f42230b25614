"""The household credit file (信用档案): per household and year, the points earned and deducted, the red and black
postings and the rectifications, and a credit grade by the county's rule; exported for the 信用村 / 信用户 evaluation
only for households whose consent is recorded and in force.

The rule is the `credit` section of the ruleset (积分细则) the village uses at the end of the year asked, or now for
the current year (`basis`): the county sets, versions and assigns it with the rest of the ruleset. A village with no
ruleset in force then is graded by the default rule (`rules.CreditRule()`, the county's former fixed rule), and the
page and the export say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import rules
from app.audit import service as audit
from app.core.context import Actor
from app.core.scope import ScopeFilter
from app.core.spreadsheet import xlsx_sheets
from app.errors import Conflict, ValidationFailed
from app.households.service import households
from app.ledger import service as ledger
from app.lists import service as lists
from app.reports.models import CreditConsent
from app.rulesets import service as rulesets


@dataclass(frozen=True)
class CreditBasis:
    """What a village's credit file for a year is graded by: the credit rule of the ruleset in force in `month`
    (`code` and `version` None when no ruleset was in force: the default rule)."""

    month: int
    rule: rules.CreditRule = field(default_factory=rules.CreditRule)
    code: str | None = None
    version: int | None = None
    name: str = ""

    @property
    def source(self) -> str:
        """Where the rule comes from, in words (for the page and the export)."""
        if self.code is None:
            return f"默认规则（{rulesets.month_label(self.month)}本村没有适用的积分细则）"
        return f"积分细则 {self.code} 第 {self.version} 版（{self.name}）"


def basis(session: Session, village_id: int, year: int) -> CreditBasis:
    """The rule for the village's year: the ruleset in force in December, or this month for the current year."""
    month = min(year * 100 + 12, lists.this_month())
    stored = rulesets.in_force(session, village_id, month)
    if stored is None:
        return CreditBasis(month)
    r = stored.ruleset
    return CreditBasis(month, r.credit, r.code, r.version, r.name)


@dataclass(frozen=True)
class CreditLine:
    household_id: int
    number: str
    head_name: str
    earned: int  # awards
    deducted: int  # penalties (positive)
    red: int
    black: int  # black postings left standing (effective or expired, not lifted, not voided)
    rectified: int  # black postings lifted through rectification
    grade: str
    consent: CreditConsent | None

    @property
    def net(self) -> int:
        return self.earned - self.deducted


def grade(earned: int, deducted: int, red: int, black: int, lifted: int = 0,
          rule: rules.CreditRule | None = None) -> str:
    """The grade of a year's record by `rule` (default: the default rule)."""
    return (rule or rules.CreditRule()).grade(rules.CreditRecord(earned, deducted, red, black, lifted))


def credit_file(session: Session, village_id: int, year: int, *, household_id: int | None = None,
                by: CreditBasis | None = None) -> list[CreditLine]:
    """The village's households (or the one asked for) with their year's record and grade by the rule of `by`
    (default: `basis(...)`): four statements, and the ruleset lookup when `by` is not given."""
    rule = (by or basis(session, village_id, year)).rule
    roll = households.search(session, _village_filter(village_id), village_id=village_id, limit=100_000).rows
    if household_id is not None:
        roll = [h for h in roll if h.id == household_id]
    points = ledger.household_kind_totals(session, village_id, year * 100 + 1, year * 100 + 12)
    by_household: dict[int, list[Any]] = {}
    for p in lists.postings(session, village_id, year=year, household_id=household_id):
        if p.status != "voided":
            by_household.setdefault(p.household_id, []).append(p)
    consents = in_force(session, [h.id for h in roll if h.id is not None])
    out: list[CreditLine] = []
    for h in roll:
        hid = h.id
        assert hid is not None
        mine = by_household.get(hid, [])
        red = sum(1 for p in mine if p.list == "red")
        lifted = sum(1 for p in mine if p.list == "black" and p.status == "lifted")
        black = sum(1 for p in mine if p.list == "black" and p.status != "lifted")
        kinds = points.get(hid, {})
        earned, deducted = kinds.get("award", 0), -kinds.get("penalty", 0)
        out.append(CreditLine(hid, h.number, h.head_name, earned, deducted, red, black, lifted,
                              grade(earned, deducted, red, black, lifted, rule), consents.get(hid)))
    return out


def _village_filter(village_id: int) -> ScopeFilter:
    return ScopeFilter(village_ids=frozenset({village_id}))


# ---- consent ---------------------------------------------------------------------------------------------------------

def in_force(session: Session, household_ids: list[int]) -> dict[int, CreditConsent]:
    if not household_ids:
        return {}
    rows = session.execute(select(CreditConsent).where(CreditConsent.household_id.in_(household_ids),
                                                       CreditConsent.withdrawn_on.is_(None))).scalars()
    return {c.household_id: c for c in rows}


def record_consent(session: Session, actor: Actor, household_id: int, *, given_on: date, how: str) -> CreditConsent:
    households.get_household(session, household_id)
    how = (how or "").strip()
    if not how or len(how) > 100:
        raise ValidationFailed("请写明农户如何同意（不超过 100 个字），例如：户主签字的同意书已存档", details={"field": "how"})
    if in_force(session, [household_id]):
        raise Conflict("该户的同意已经登记过了", code="consent_exists")
    c = CreditConsent(household_id=household_id, given_on=given_on, how=how, recorded_by=actor.name[:80])
    session.add(c)
    session.flush()
    audit.record(session, actor, "reports.credit.consent", object_type="household", object_id=household_id,
                 after={"given_on": given_on.isoformat(), "how": how})
    return c


def withdraw_consent(session: Session, actor: Actor, household_id: int, *, on: date) -> CreditConsent:
    c = in_force(session, [household_id]).get(household_id)
    if c is None:
        raise Conflict("该户没有登记过同意，或已经撤回", code="no_consent")
    c.withdrawn_on, c.withdrawn_by = on, actor.name[:80]
    session.flush()
    audit.record(session, actor, "reports.credit.withdraw", object_type="household", object_id=household_id,
                 after={"withdrawn_on": on.isoformat()})
    return c


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXPORT_HEADER = ["户号", "户主", "年度", "得分", "扣分", "净得积分", "红榜次数", "黑榜（未移出）", "黑榜已整改移出", "信用等级",
                 "同意日期", "同意方式", "评级依据"]
RULE_SHEET = "评级规则"


def export_file(session: Session, village_id: int, village_name: str, year: int) -> tuple[bytes, str, str, int]:
    """(content, file name, media type, households left out for want of consent): the credit file of the
    households whose consent is in force, nothing of the others; each row names the ruleset (code and version)
    graded by, and a second sheet states the rule in words."""
    by = basis(session, village_id, year)
    ref = f"{by.code} 第{by.version}版" if by.code is not None else "默认规则"
    lines = credit_file(session, village_id, year, by=by)
    rows = [[ln.number, ln.head_name, year, ln.earned, ln.deducted, ln.net, ln.red, ln.black, ln.rectified, ln.grade,
             ln.consent.given_on.isoformat(), ln.consent.how, ref] for ln in lines if ln.consent is not None]
    rule_rows = [["评级依据", by.source], *([g, text] for g, text in by.rule.describe())]
    data = xlsx_sheets([(f"{year}年信用档案", EXPORT_HEADER, rows, [8, 10, 6, 8, 8, 9, 8, 12, 14, 9, 11, 28, 20]),
                        (RULE_SHEET, ["信用等级", "条件"], rule_rows, [12, 80])])
    return data, f"{village_name}{year}年农户信用档案.xlsx", XLSX, len(lines) - len(rows)
