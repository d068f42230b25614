"""Monthly rounds: the state machine, recusal and quorum, determinations and votes, finalisation through the ledger
(exactly once), objections before and after finalisation."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from app.committee import service as committee
from app.core.context import Actor
from app.db import Database
from app.errors import AppError, Conflict, ValidationFailed
from app.evaluation.models import EvalRound, Motion, Rating, RoundEvent
from app.evaluation.service import motions, objections, rounds
from app.ledger import service as ledger
from app.lists.models import ListPosting
from tests.support.eval_helpers import CLERK, REVIEWER, THEMES, agree_all, consensus_round, eval_village
from tests.support.factories import make_grant, make_user

MONTH = 202609
AFTER = date(2026, 11, 1)  # a day after any publicity window of these tests


def _count(db: Database, model: type) -> int:
    with db.read_txn() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _through_review(s, rid: int) -> None:  # type: ignore[no-untyped-def]
    rounds.submit(s, CLERK, rid)
    rounds.approve(s, REVIEWER, rid)
    rounds.publicise(s, CLERK, rid, on=date(2026, 10, 5))


def test_a_month_from_draft_to_finalised_posts_the_explained_points_once(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        h0, h5 = ev.households[0], ev.households[5]
        agree_all(s, rid, ev.households, "良", {(h5, "ENV"): "优", (h5, "LAW"): "差"})
        _through_review(s, rid)
        done = rounds.finalise(s, CLERK, rid, on=AFTER)
    # 良 = 6 on six themes; h5: ENV 优 10, LAW 差 -5 -> 6*4 + 10 - 5 = 29
    with db.read_txn() as s:
        assert ledger.balance(s, h0) == 36 and ledger.balance(s, h5) == 29
        assert done.transactions == 6 and (done.points_issued, done.points_deducted) == (36 * 5 + 34, 5)
        res = rounds.stored_results(s, rid)[h5]
        env = next(ln for ln in res.lines if ln["code"] == "ENV")
        assert "优" in env["explanation"] and env["points"] == 10
        assert [e.to_status for e in rounds.events(s, rid)] == ["draft", "submitted", "approved", "publicised",
                                                                 "finalised"]
        assert ledger.verify(s) == []
    with pytest.raises(AppError, match="不能“公示结束，积分入账”"), db.write_txn() as s:
        rounds.finalise(s, CLERK, rid, on=AFTER)
    with db.read_txn() as s:
        assert ledger.balance(s, h0) == 36  # finalising twice posts nothing more


def test_transitions_out_of_order_are_refused_and_change_nothing(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
    for step in (lambda s: rounds.approve(s, REVIEWER, rid), lambda s: rounds.publicise(s, CLERK, rid),
                 lambda s: rounds.finalise(s, CLERK, rid, on=AFTER)):
        with pytest.raises(AppError, match="当前为“草稿”"), db.write_txn() as s:
            step(s)
    with pytest.raises(AppError, match="评分不完整"), db.write_txn() as s:
        rounds.submit(s, CLERK, rid)  # nothing rated yet
    with db.read_txn() as s:
        assert s.get(EvalRound, rid).status == "draft"  # type: ignore[union-attr]
    assert _count(db, RoundEvent) == 1


def test_returned_round_is_edited_and_resubmitted_and_the_review_needs_a_reason(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households)
        rounds.submit(s, CLERK, rid)
    with pytest.raises(ValidationFailed, match="写明需要修改"), db.write_txn() as s:
        rounds.return_round(s, REVIEWER, rid, " ")
    with pytest.raises(AppError, match="待乡镇审核"), db.write_txn() as s:
        agree_all(s, rid, ev.households, "优")  # frozen while under review
    with db.write_txn() as s:
        rounds.return_round(s, REVIEWER, rid, "3号户环保卫生评分与照片不符")
        agree_all(s, rid, ev.households[2:3], "优")
        rounds.submit(s, CLERK, rid)
        rnd = rounds.get_round(s, rid)
        assert rnd.status == "submitted" and rnd.review_comment == "3号户环保卫生评分与照片不符"


def test_one_round_per_village_and_month(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        consensus_round(s, ev, MONTH)
    with pytest.raises(Conflict, match="每村每月只能有一轮"), db.write_txn() as s:
        consensus_round(s, ev, MONTH)
    with pytest.raises(ValidationFailed, match="还没到"), db.write_txn() as s:
        consensus_round(s, ev, rounds.next_month(rounds.current_month()))
    assert _count(db, EvalRound) == 1


def test_a_bad_grade_saves_no_cell(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
    cells = [rounds.Cell(ev.households[0], "ENV", "优"), rounds.Cell(ev.households[1], "ENV", "A+"),
             rounds.Cell(ev.households[1], "NOPE", "优")]
    with pytest.raises(ValidationFailed, match="等级“A\\+”不在评分标准内") as e, db.write_txn() as s:
        rounds.save_ratings(s, CLERK, rid, cells)
    assert len(e.value.details["problems"]) == 2
    assert _count(db, Rating) == 0


def test_panel_recusal_and_quorum_count_only_eligible_members(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rnd = rounds.open_round(s, CLERK, village_id=ev.vid, month=MONTH, mode="panel")
        rid = rnd.id
        h0, h4 = ev.households[0], ev.households[4]
        committee.declare_recusal(s, ev.actor(1), ev.vid, user_id=ev.members[1].id, household_id=h4, reason="亲属")
    # member 0 rating his own household, member 1 rating a relative: refused, nothing saved
    for i, hid in ((0, h0), (1, h4)):
        with pytest.raises(ValidationFailed, match="回避"), db.write_txn() as s:
            rounds.save_ratings(s, ev.actor(i), rid, [rounds.Cell(hid, "ENV", "优")], rater_id=ev.members[i].id)
    with pytest.raises(ValidationFailed, match="不是本村评比委员会的委员"), db.write_txn() as s:
        rounds.save_ratings(s, CLERK, rid, [rounds.Cell(h4, "ENV", "优")], rater_id=999_999)
    assert _count(db, Rating) == 0
    with db.write_txn() as s:
        for i, m in enumerate(ev.members):
            cells = [rounds.Cell(h, t, "优" if i < 2 else "中") for h in ev.households for t in THEMES
                     if committee.eligibility(s, ev.vid).may_rate(m.id, h)]  # type: ignore[arg-type]
            rounds.save_ratings(s, ev.actor(i), rid, cells, rater_id=m.id)  # type: ignore[arg-type]
        result = rounds.compute(s, rounds.get_round(s, rid))
    # h4: members 0, 2, 3 eligible (1 recused) -> 优, 中, 中 -> median 中; h0: members 1, 2, 3 -> 优, 中, 中
    hr = result.household(h4)
    assert hr is not None and {ln.grade for ln in hr.lines} == {"中"} and all(len(ln.raters) == 3 for ln in hr.lines)
    assert ev.members[1].id not in hr.lines[0].raters
    # a 4-member panel with two recusals on one household falls below the quorum of 3: a problem, never a zero
    with db.write_txn() as s:
        committee.declare_recusal(s, ev.actor(2), ev.vid, user_id=ev.members[2].id, household_id=h4, reason="邻里纠纷")
        result = rounds.compute(s, rounds.get_round(s, rid))
    assert result.household(h4) is None and any(p.household_id == h4 for p in result.problems)


def test_consensus_quorum_counts_eligible_members_present(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rnd = rounds.open_round(s, CLERK, village_id=ev.vid, month=MONTH,
                                present=[ev.members[0].id, ev.members[1].id, ev.members[2].id])
        agree_all(s, rnd.id, ev.households)  # type: ignore[arg-type]
        result = rounds.compute(s, rnd)
    # household 0 belongs to member 0: only two eligible members present, below the quorum of 3
    assert result.household(ev.households[0]) is None
    assert result.household(ev.households[3]) is not None
    with pytest.raises(AppError, match="评分不完整"), db.write_txn() as s:
        rounds.submit(s, CLERK, rnd.id)  # type: ignore[arg-type]


def test_determination_needs_evidence_and_its_vote_and_posts_to_the_black_list(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households)
        target = ev.households[5]
        m = motions.propose_determination(s, CLERK, rid, household_id=target, code="DISHONEST",
                                          description="拖欠邻居借款两年不还")
    with pytest.raises(ValidationFailed, match="须有证据"), db.write_txn() as s:
        motions.vote(s, ev.actor(0), m.id, "yes")  # type: ignore[arg-type]
    with db.write_txn() as s:
        motions.add_evidence(s, CLERK, m.id, file_name="借条.jpg", media_type="image/jpeg", data=b"\xff\xd8\xffjpeg")  # type: ignore[arg-type]
        _, t = motions.vote(s, ev.actor(0), m.id, "yes")  # type: ignore[arg-type]
        assert (t.eligible, t.needed) == (4, 3)  # two thirds of the four eligible
        motions.vote(s, ev.actor(1), m.id, "yes")  # type: ignore[arg-type]
    with pytest.raises(AppError, match="未完成表决"), db.write_txn() as s:
        rounds.submit(s, CLERK, rid)
    with db.write_txn() as s:
        motion, _ = motions.vote(s, ev.actor(2), m.id, "yes")  # type: ignore[arg-type]
        assert motion.status == "passed"
        _through_review(s, rid)
        rounds.finalise(s, CLERK, rid, on=AFTER)
    with db.read_txn() as s:
        black = [p for p in rounds.postings_of_round(s, rid) if p.list == "black"]
        assert [(p.household_id, p.code, p.from_month, p.to_month) for p in black] == [(target, "DISHONEST", MONTH,
                                                                                         202611)]
        assert ledger.balance(s, target) == 36 - 10


def test_a_recused_member_cannot_vote(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        m = motions.propose_determination(s, CLERK, rid, household_id=ev.households[0], code="CIVILISED_FAMILY",
                                          description="家风良好")
    with pytest.raises(ValidationFailed, match="回避"), db.write_txn() as s:
        motions.vote(s, ev.actor(0), m.id, "yes")  # type: ignore[arg-type]
    with db.write_txn() as s:
        for i in (1, 2):
            motion, t = motions.vote(s, ev.actor(i), m.id, "yes")  # type: ignore[arg-type]
        assert t.eligible == 3 and motion.status == "passed"  # a majority of the three eligible


def test_objection_upheld_during_publicity_changes_the_results_before_posting(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        h = ev.households[4]
        agree_all(s, rid, ev.households, "良", {(h, "ENV"): "差"})
        _through_review(s, rid)
        o = objections.file(s, CLERK, rid, household_id=h, target="rating", theme="ENV",
                            text="院子已清理，有照片", on_paper=True, day=date(2026, 10, 6))
    with pytest.raises(AppError, match="异议未处理"), db.write_txn() as s:
        rounds.finalise(s, CLERK, rid, on=AFTER)
    with pytest.raises(ValidationFailed, match="更正后的等级"), db.write_txn() as s:
        objections.resolve(s, CLERK, o.id, uphold=True, reason="核实属实")  # type: ignore[arg-type]
    with db.write_txn() as s:
        objections.resolve(s, CLERK, o.id, uphold=True, reason="现场核实已整改", corrected_grade="良")  # type: ignore[arg-type]
        rounds.finalise(s, CLERK, rid, on=AFTER)
    with db.read_txn() as s:
        assert ledger.balance(s, h) == 36
        env = next(ln for ln in rounds.stored_results(s, rid)[h].lines if ln["code"] == "ENV")
        assert env["grade"] == "良"


def test_objection_window_closes(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH, objection_days=5)
        agree_all(s, rid, ev.households)
        _through_review(s, rid)  # publicised on 2026-10-05 for five days: objections until 10-09
        assert rounds.get_round(s, rid).objections_close_on == date(2026, 10, 9)
        objections.file(s, CLERK, rid, household_id=ev.households[1], target="rating", theme="LAW", text="不服",
                        day=date(2026, 10, 9))
    with pytest.raises(Conflict, match="异议受理已截止"), db.write_txn() as s:
        objections.file(s, CLERK, rid, household_id=ev.households[1], target="rating", theme="ENV", text="不服",
                        day=date(2026, 10, 10))
    with pytest.raises(AppError, match="之后才能入账"), db.write_txn() as s:
        rounds.finalise(s, CLERK, rid, on=date(2026, 10, 9))


def test_objection_upheld_after_finalisation_posts_compensation_citing_it(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        h = ev.households[5]
        agree_all(s, rid, ev.households)
        m = motions.propose_determination(s, CLERK, rid, household_id=h, code="UNHYGIENIC",
                                          description="柴草乱堆", evidence="三次提醒未整改")
        for i in range(3):
            motions.vote(s, ev.actor(i), m.id, "yes")  # type: ignore[arg-type]
        _through_review(s, rid)
        rounds.finalise(s, CLERK, rid, on=AFTER)
        assert ledger.balance(s, h) == 36 - 5
        o = objections.file(s, CLERK, rid, household_id=h, target="determination", motion_id=m.id,
                            text="柴草是邻居家的", on_paper=True)
        tx_before = ledger.transaction_count(s)
        res = objections.resolve(s, CLERK, o.id, uphold=True, reason="经核实柴草属邻户")  # type: ignore[arg-type]
    assert res.delta == 5 and res.ledger_tx_id is not None
    with db.read_txn() as s:
        assert ledger.balance(s, h) == 36 and ledger.transaction_count(s) == tx_before + 1
        tx = ledger.get_transaction(s, res.ledger_tx_id)
        assert f"异议 #{o.id}" in tx.memo and tx.reference == f"objection:{o.id}"
        statuses = {(p.code, p.status) for p in rounds.postings_of_round(s, rid) if p.household_id == h}
        assert ("UNHYGIENIC", "voided") in statuses
        assert rounds.stored_results(s, rid)[h].total == 36
        assert ledger.verify(s) == []
    with pytest.raises(Conflict, match="已处理"), db.write_txn() as s:
        objections.resolve(s, CLERK, o.id, uphold=True, reason="再次")  # type: ignore[arg-type]
    assert _count(db, ListPosting) == 1


def test_recusal_covers_proposals(db: Database) -> None:
    """A member proposes no determination, award or penalty for the own household or one declared a recusal for;
    a committee-role holder not yet linked to a household proposes nothing; the clerk proposes for anyone."""
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        committee.declare_recusal(s, CLERK, ev.vid, user_id=ev.members[1].id, household_id=ev.households[4],  # type: ignore[arg-type]
                                  reason="女儿家")
        unlinked = make_user(s, name="新委员")
        make_grant(s, unlinked, "committee_member", village_id=ev.vid)  # type: ignore[arg-type]
    newcomer = Actor(user_id=unlinked.id, name="新委员", role="committee_member")
    refused = [(ev.actor(0), ev.households[0]), (ev.actor(1), ev.households[4]), (newcomer, ev.households[5])]
    for who, hid in refused:
        with pytest.raises(ValidationFailed, match=r"回避|尚未关联本人农户"), db.write_txn() as s:
            motions.propose_determination(s, who, rid, household_id=hid, code="CIVILISED_FAMILY", description="家风好")
        for kind in ("award", "penalty"):
            with pytest.raises(ValidationFailed, match=r"回避|尚未关联本人农户"), db.write_txn() as s:
                motions.propose_adhoc(s, who, ev.vid, household_id=hid, kind=kind, points=5, description="事由")
    assert _count(db, Motion) == 0
    with db.write_txn() as s:  # another member's household, and the clerk for the member's own: allowed
        motions.propose_determination(s, ev.actor(0), rid, household_id=ev.households[3], code="CIVILISED_FAMILY",
                                      description="家风好")
        motions.propose_adhoc(s, ev.actor(1), ev.vid, household_id=ev.households[0], kind="award", points=5,
                              description="修路")
        motions.propose_adhoc(s, CLERK, ev.vid, household_id=ev.households[0], kind="penalty", points=5,
                              description="乱倒垃圾")
    assert _count(db, Motion) == 3


def test_ad_hoc_award_is_posted_when_the_committee_approves_it(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        h = ev.households[3]
        m = motions.propose_adhoc(s, CLERK, ev.vid, household_id=h, kind="award", points=15,
                                  description="冒雨抢修村道", evidence="村民3人作证")
        motions.vote(s, ev.actor(0), m.id, "yes")  # type: ignore[arg-type]
        assert ledger.balance(s, h) == 0
        motions.vote(s, ev.actor(1), m.id, "no")  # type: ignore[arg-type]
        motion, _ = motions.vote(s, ev.actor(2), m.id, "yes")  # type: ignore[arg-type]
        assert motion.status == "passed" and motion.ledger_tx_id is not None
    with db.read_txn() as s:
        assert ledger.balance(s, h) == 15
        assert "冒雨抢修村道" in ledger.get_transaction(s, motion.ledger_tx_id).memo  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="已通过"), db.write_txn() as s:
        motions.vote(s, ev.actor(3), m.id, "yes")  # type: ignore[arg-type]


def test_households_joining_and_leaving_in_the_month_are_rated_and_flagged(db: Database) -> None:
    from sqlalchemy import update

    from app.core.clock import local_day_start_utc
    from app.households.models import Household
    with db.write_txn() as s:
        ev = eval_village(s, households=8)
        h_new, h_left, h_gone = ev.households[5], ev.households[6], ev.households[7]
        s.execute(update(Household).where(Household.id == h_new).values(
            created_at=local_day_start_utc(date(2026, 9, 12))))
        s.execute(update(Household).where(Household.id == h_left).values(status="moved_out",
                                                                        status_date=date(2026, 9, 20)))
        s.execute(update(Household).where(Household.id == h_gone).values(status="dissolved",
                                                                        status_date=date(2026, 8, 2)))
        rid = consensus_round(s, ev, MONTH)
        notes = {e.household_id: e.note for e in rounds.roster(s, rounds.get_round(s, rid))}
    assert notes[h_new] == "本月新增" and notes[h_left] == "本月迁出" and h_gone not in notes
    assert len(notes) == 7


def test_simulation_of_a_draft_ruleset_on_a_past_round(db: Database) -> None:
    import dataclasses

    from app import rules
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households, "良", {(ev.households[1], "ENV"): "优"})
        current = rounds.ruleset_of(s, rounds.get_round(s, rid))
        env = current.theme("ENV")
        assert env is not None
        draft = dataclasses.replace(current, themes=tuple(
            dataclasses.replace(t, grades=tuple(dataclasses.replace(g, points=15) if g.code == "优" else g
                                                for g in t.grades), monthly_cap=15) if t.code == "ENV" else t
            for t in current.themes))
        sim = rounds.simulate(s, rounds.get_round(s, rid), draft)
    assert [(c.household_id, c.delta) for c in sim.changes] == [(ev.households[1], 5)]
    assert sim.totals.points_issued == (sim.totals.points_issued[0], sim.totals.points_issued[0] + 5)
    assert isinstance(sim, rules.Simulation)


def test_two_clerks_finalising_at_once_post_once(db: Database) -> None:
    import threading

    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households)
        _through_review(s, rid)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def clerk() -> None:
        start.wait()
        try:
            with db.write_txn() as s:
                rounds.finalise(s, CLERK, rid, on=AFTER)
            outcomes.append("finalised")
        except AppError as e:
            outcomes.append(e.message)

    threads = [threading.Thread(target=clerk) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[0] == "finalised" and "不能“公示结束，积分入账”" in sorted(outcomes)[1]
    with db.read_txn() as s:
        assert all(ledger.balance(s, h) == 36 for h in ev.households) and ledger.verify(s) == []


def test_the_committee_changing_after_submission_changes_no_result(db: Database) -> None:
    """The committee is frozen with the roster at submission: recusals declared later apply to later rounds."""
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households)
        _through_review(s, rid)
        h = ev.households[5]
        for i in (1, 2):
            committee.declare_recusal(s, ev.actor(i), ev.vid, user_id=ev.members[i].id, household_id=h, reason="亲属")
        rounds.finalise(s, CLERK, rid, on=AFTER)
        assert ledger.balance(s, h) == 36
        # after finalisation too: an upheld objection posts its own difference only (良 6 -> 优 10)
        o = objections.file(s, CLERK, rid, household_id=h, target="rating", theme="ENV", text="环保应为优",
                            on_paper=True)
        res = objections.resolve(s, CLERK, o.id, uphold=True, reason="核实", corrected_grade="优")  # type: ignore[arg-type]
        assert res.delta == 4 and ledger.balance(s, h) == 40


def test_two_objections_after_finalisation_each_post_their_own_difference(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        h = ev.households[5]
        agree_all(s, rid, ev.households, "良", {(h, "ENV"): "中", (h, "PUBLIC"): "中"})
        _through_review(s, rid)
        rounds.finalise(s, CLERK, rid, on=AFTER)
        assert ledger.balance(s, h) == 28
        a = objections.file(s, CLERK, rid, household_id=h, target="rating", theme="ENV", text="环保", on_paper=True)
        b = objections.file(s, CLERK, rid, household_id=h, target="rating", theme="PUBLIC", text="公益", on_paper=True)
        ra = objections.resolve(s, CLERK, a.id, uphold=True, reason="核实", corrected_grade="良")  # type: ignore[arg-type]
        rb = objections.resolve(s, CLERK, b.id, uphold=True, reason="核实", corrected_grade="优")  # type: ignore[arg-type]
        assert (ra.delta, rb.delta) == (4, 8)
        assert ledger.balance(s, h) == 40 and rounds.stored_results(s, rid)[h].total == 40


def test_an_objection_to_a_commendation_posting_goes_through_the_determination(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, MONTH)
        h = ev.households[5]
        agree_all(s, rid, ev.households)
        m = motions.propose_determination(s, CLERK, rid, household_id=h, code="CIVILISED_FAMILY", description="家风好")
        for i in range(3):
            motions.vote(s, ev.actor(i), m.id, "yes")  # type: ignore[arg-type]
        _through_review(s, rid)
    with pytest.raises(ValidationFailed, match="请对“认定”提出异议"), db.write_txn() as s:
        objections.file(s, CLERK, rid, household_id=h, target="posting", posting_code="CIVILISED_FAMILY", text="不服",
                        day=date(2026, 10, 6))


def test_env_graded_worst_three_months_running_posts_to_the_black_list(db: Database) -> None:
    """The default ruleset's black policy: 环保卫生 差 for three months running posts 卫生不整洁户; the earlier months
    are read from the finalised rounds."""
    with db.write_txn() as s:
        ev = eval_village(s)
        h = ev.households[5]
        for month in (202607, 202608, 202609):
            rid = consensus_round(s, ev, month)
            agree_all(s, rid, ev.households, "良", {(h, "ENV"): "差"})
            _through_review(s, rid)
            rounds.finalise(s, CLERK, rid, on=AFTER)
            black = [p for p in rounds.postings_of_round(s, rid) if p.list == "black"]
            if month < 202609:
                assert black == []
        assert [(p.household_id, p.code, p.theme) for p in black] == [(h, "UNHYGIENIC", "ENV")]
        assert rounds.stored_results(s, rid)[h].grades["ENV"] == "差"
        assert rounds.identical_months(s, rounds.get_round(s, rid))[h] == 3
