"""Building a village ready for a monthly round: households registered a year ago, a committee of members each linked
to their own household, the county default ruleset."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import rules
from app.auth.models import User
from app.committee import service as committee
from app.core.context import Actor
from app.db import Database
from app.evaluation.service import rounds
from app.households.models import Household
from app.org.models import Village
from app.rulesets import service as rulesets
from tests.support.factories import make_grant, make_household, make_user, make_village

CLERK = Actor(user_id=None, name="村文书", role="village_clerk")
REVIEWER = Actor(user_id=None, name="乡镇审核员", role="township_reviewer")
THEMES = [t.code for t in rules.default_ruleset().themes]
NAMES = ["张建国", "李秀英", "王德明", "赵桂兰", "刘志强", "陈玉梅", "杨国华", "黄淑芬", "周永福", "吴春花"]
LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class EvalVillage:
    village: Village
    households: list[int]
    members: list[User] = field(default_factory=list)  # committee members; member i lives in households[i]

    @property
    def vid(self) -> int:
        assert self.village.id is not None
        return self.village.id

    def actor(self, i: int) -> Actor:
        u = self.members[i]
        return Actor(user_id=u.id, name=u.display_name, role="committee_member")


def eval_village(s: Session, *, households: int = 6, members: int = 4, month_from: int = 202401,
                 password: str = "Passw0rd-test") -> EvalVillage:
    v = make_village(s)
    hids = [make_household(s, v, number=f"{i + 1:03d}", head=NAMES[i % len(NAMES)]).id for i in range(households)]
    s.execute(update(Household).where(Household.id.in_(hids)).values(created_at=LONG_AGO))  # registered long ago
    ev = EvalVillage(v, hids)  # type: ignore[arg-type]
    for i in range(members):
        u = make_user(s, password=password, name=f"委员{i + 1}")
        make_grant(s, u, "committee_member", village_id=v.id)  # type: ignore[arg-type]
        committee.link(s, CLERK, v.id, user_id=u.id, household_id=hids[i])  # type: ignore[arg-type]
        ev.members.append(u)
    rulesets.ensure_default(s, CLERK, from_month=month_from)
    s.flush()
    return ev


def agree_all(s: Session, round_id: int, households: list[int], grade: str = "良",
              exceptions: dict[tuple[int, str], str] | None = None) -> None:
    cells = [rounds.Cell(h, t, (exceptions or {}).get((h, t), grade)) for h in households for t in THEMES]
    rounds.save_ratings(s, CLERK, round_id, cells)


def consensus_round(s: Session, ev: EvalVillage, month: int, **kw: object) -> int:
    rnd = rounds.open_round(s, CLERK, village_id=ev.vid, month=month, mode="consensus",
                            present=[u.id for u in ev.members], **kw)  # type: ignore[arg-type, misc]
    assert rnd.id is not None
    return rnd.id


def staffed_village(db: Database) -> tuple[EvalVillage, int]:
    """`eval_village` with the people around it: clerk `clerk1`, the township's reviewer `reviewer1`, and `home5`,
    the account of the fifth household (no member's own); returns the village and that household."""
    with db.write_txn() as s:
        ev = eval_village(s)
        clerk = make_user(s, "clerk1", name="王文书")
        make_grant(s, clerk, "village_clerk", village_id=ev.vid)
        reviewer = make_user(s, "reviewer1", name="乡镇审核员")
        make_grant(s, reviewer, "township_reviewer", township_id=ev.village.township_id)  # type: ignore[arg-type]
        home = make_user(s, "home5", name="户主五")
        make_grant(s, home, "household", household_id=ev.households[4])
        return ev, ev.households[4]
