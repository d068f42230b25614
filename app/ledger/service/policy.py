"""The county's expiry policy (the first half of the old "policy and expiry" section): `Policy` says when a lot
of points earned on a day expires and how to describe the rule; `get_policy` reads it and `set_policy` changes it
(validated and audited). Kept apart from `expiry` because posting (a reversal's check) reads it too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.errors import ValidationFailed
from app.ledger.models import ExpiryRule, LedgerPolicy
from app.org.models import County


@dataclass(frozen=True)
class Policy:
    expiry_rule: ExpiryRule = ExpiryRule.NONE
    expiry_months: int | None = None

    def lot_expiry(self, earned: date) -> date | None:
        """The last day a point earned on `earned` can be spent."""
        if self.expiry_rule is ExpiryRule.YEAR_END_NEXT:
            return date(earned.year + 1, 12, 31)
        if self.expiry_rule is ExpiryRule.MONTHS and self.expiry_months:
            m = earned.year * 12 + (earned.month - 1) + self.expiry_months + 1  # the month after the last month
            return date(m // 12, m % 12 + 1, 1) - timedelta(days=1)
        return None

    @property
    def label(self) -> str:
        if self.expiry_rule is ExpiryRule.YEAR_END_NEXT:
            return "当年积分次年底清零（例如 2026 年获得的积分可用到 2027 年 12 月 31 日）"
        if self.expiry_rule is ExpiryRule.MONTHS:
            return f"积分获得后满 {self.expiry_months} 个月清零（用到第 {self.expiry_months} 个月的月底）"
        return "积分长期有效，不清零"


def _county_id(session: Session) -> int | None:
    return session.execute(select(County.id).order_by(County.id).limit(1)).scalar()


def get_policy(session: Session) -> Policy:
    cid = _county_id(session)
    row = session.get(LedgerPolicy, cid) if cid else None
    if row is None:
        return Policy()
    return Policy(ExpiryRule(row.expiry_rule), row.expiry_months)


def set_policy(session: Session, actor: Actor, *, expiry_rule: str, expiry_months: int | None) -> Policy:
    try:
        rule = ExpiryRule(expiry_rule)
    except ValueError:
        raise ValidationFailed("积分有效期规则只能是：长期有效、次年底清零、满 N 个月清零",
                               details={"field": "expiry_rule"}) from None
    if rule is ExpiryRule.MONTHS:
        if expiry_months is None or not 1 <= expiry_months <= 120:
            raise ValidationFailed("“满 N 个月清零”须填写 1–120 之间的月数", details={"field": "expiry_months"})
    else:
        expiry_months = None
    cid = _county_id(session)
    if cid is None:
        raise ValidationFailed("还没有建立县（区），请先初始化行政区划")
    before = get_policy(session)
    row = session.get(LedgerPolicy, cid)
    if row is None:
        row = LedgerPolicy(county_id=cid)
    row.expiry_rule, row.expiry_months = rule.value, expiry_months
    row.updated_at, row.updated_by = utcnow(), actor.name[:80]
    session.add(row)
    session.flush()
    audit.record(session, actor, "ledger.policy", object_type="county", object_id=cid,
                 before={"expiry_rule": before.expiry_rule.value, "expiry_months": before.expiry_months},
                 after={"expiry_rule": rule.value, "expiry_months": expiry_months})
    return Policy(rule, expiry_months)
