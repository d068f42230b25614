"""The monthly evaluation's tables: rounds and their events, ratings, motions and votes, evidence, objections, the
round's results per household and uploaded rating sheets. The rulesets, the committee and the red/black lists have
tables of their own domains (app.rulesets, app.committee, app.lists)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow

# ---- rounds ----------------------------------------------------------------------------------------------------------


class EvalRound(SQLModel, table=True):
    """One village's month (评比轮次). `status`: draft -> submitted -> approved | returned -> publicised -> finalised.
    `roster` and `eligibility` (the committee: members and whom each may not rate) are frozen at submission, so
    nothing done to the committee afterwards changes the results the township approved. The ruleset version is fixed
    when the round opens."""

    __tablename__ = "eval_rounds"
    __table_args__ = (UniqueConstraint("village_id", "month"),
                      # what the dashboards read of a round, without touching its frozen roster
                      Index("ix_eval_rounds_states", "village_id", "month", "status", "finalised_at",
                            "households_rated", "roster_size"))

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    month: int  # YYYYMM
    status: str = Field(default="draft", max_length=12)
    mode: str = Field(default="consensus", max_length=10)  # panel | consensus
    ruleset_code: str = Field(max_length=40)
    ruleset_version: int
    present_member_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    objection_days: int = Field(default=5)
    objections_close_on: date | None = None
    roster: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # who could rate whom, frozen at submission with the roster: {"members": {uid: name}, "barred": {uid: [hid]}}
    eligibility: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    review_comment: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=80)
    updated_at: datetime = Field(default_factory=utcnow)
    finalised_at: datetime | None = None
    roster_size: int | None = None  # households on the frozen roster (set with it, for the dashboards)
    households_rated: int | None = None  # results kept at finalisation


class RoundEvent(SQLModel, table=True):
    """Every transition of a round, with who and why (also in the audit log)."""

    __tablename__ = "eval_round_events"

    id: int = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="eval_rounds.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    from_status: str = Field(max_length=12)
    to_status: str = Field(max_length=12)
    actor_id: int | None = None
    actor_name: str = Field(max_length=80)
    comment: str | None = Field(default=None, max_length=1000)


class Rating(SQLModel, table=True):
    """One grade: by committee member `rater_id` (a user id; panel rounds), or the committee's agreed grade entered by
    the clerk (`rater_id` 0; consensus rounds)."""

    __tablename__ = "eval_ratings"
    __table_args__ = (UniqueConstraint("round_id", "household_id", "theme", "rater_id"),)

    id: int = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="eval_rounds.id", index=True)
    household_id: int = Field(foreign_key="households.id")
    theme: str = Field(max_length=20)
    rater_id: int = Field(default=0)
    grade: str = Field(max_length=10)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(max_length=80)


class Motion(SQLModel, table=True):
    """Something the committee votes on: a determination (认定) in a round, or an ad-hoc award or penalty between
    rounds. `status`: proposed -> passed | rejected; withdrawn by its proposer; voided by an upheld objection."""

    __tablename__ = "eval_motions"

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    round_id: int | None = Field(default=None, foreign_key="eval_rounds.id", index=True)
    kind: str = Field(max_length=14)  # determination | award | penalty
    household_id: int = Field(foreign_key="households.id", index=True)
    code: str | None = Field(default=None, max_length=40)  # the determination's code
    points: int | None = None  # ad-hoc awards and penalties (positive)
    member_id: int | None = Field(default=None, foreign_key="members.id")
    member_name: str | None = Field(default=None, max_length=40)
    description: str = Field(max_length=1000)
    evidence: str = Field(default="", max_length=2000)
    vote_rule: str = Field(default="majority", max_length=12)
    status: str = Field(default="proposed", max_length=12)
    proposed_by_id: int | None = None
    proposed_by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    ledger_tx_id: int | None = None


class MotionVote(SQLModel, table=True):
    __tablename__ = "eval_votes"
    __table_args__ = (UniqueConstraint("motion_id", "user_id"),)

    id: int = Field(default=None, primary_key=True)
    motion_id: int = Field(foreign_key="eval_motions.id", index=True)
    user_id: int = Field(foreign_key="users.id")
    vote: str = Field(max_length=8)  # yes | no | abstain
    at: datetime = Field(default_factory=utcnow)


class Evidence(SQLModel, table=True):
    """A photo or document attached to a motion; kept in the database so a backup holds it."""

    __tablename__ = "eval_evidence"

    id: int = Field(default=None, primary_key=True)
    motion_id: int = Field(foreign_key="eval_motions.id", index=True)
    file_name: str = Field(max_length=200)
    media_type: str = Field(max_length=60)
    size: int
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    uploaded_by: str = Field(max_length=80)


class Objection(SQLModel, table=True):
    """异议: against a rating (`theme`), a determination (`motion_id`) or a list posting (`posting_code`). Upheld before
    finalisation it changes the round's input; after, it posts a compensating ledger transaction (`ledger_tx_id`)."""

    __tablename__ = "eval_objections"

    id: int = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="eval_rounds.id", index=True)
    household_id: int = Field(foreign_key="households.id", index=True)
    target: str = Field(max_length=14)  # rating | determination | posting
    theme: str | None = Field(default=None, max_length=20)
    motion_id: int | None = Field(default=None, foreign_key="eval_motions.id")
    posting_code: str | None = Field(default=None, max_length=40)
    text: str = Field(max_length=2000)
    on_paper: bool = Field(default=False)  # the clerk entered a paper complaint
    filed_by_id: int | None = None
    filed_by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="open", max_length=10)  # open | upheld | rejected
    resolution: str | None = Field(default=None, max_length=2000)
    corrected_grade: str | None = Field(default=None, max_length=10)
    resolved_by: str | None = Field(default=None, max_length=80)
    resolved_at: datetime | None = None
    after_finalisation: bool = Field(default=False)
    delta: int | None = None
    ledger_tx_id: int | None = None


class RoundResult(SQLModel, table=True):
    """A household's result as finalised (and as corrected by objections after): the engine's lines and postings,
    so the explanation never changes with a later ruleset."""

    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("round_id", "household_id"),)

    id: int = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="eval_rounds.id", index=True)
    household_id: int = Field(foreign_key="households.id", index=True)
    total: int
    lines: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    postings: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # the combined grade per theme ("ENV" -> "差"), what later months read (worst-grade runs, unchanged grades)
    grades: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    note: str = Field(default="", max_length=40)  # 本月迁入 / 本月迁出
    ledger_tx_id: int | None = None


class SheetUpload(SQLModel, table=True):
    """An uploaded rating sheet waiting for the clerk to confirm its preview."""

    __tablename__ = "eval_sheet_uploads"

    id: int = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="eval_rounds.id", index=True)
    file_name: str = Field(max_length=200)
    cells: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    problems: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="preview", max_length=10)  # preview | applied | discarded
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=80)
