"""Fixtures that fill a county (setup, never measured): villages, households, stores, committees, rounds through the
services up to publicised, and a whole year of monthly closes written set-based (fill_dashboard). scripts/rush.py builds
its county with them too."""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, text

from app.core.context import Actor
from app.core.scope import ScopeFilter
from app.db import Database
from app.demo.people import FamilyMaker
from scripts.bench.common import ACTOR, analyze, settle


def setup_village(db: Database, groups: int = 10) -> int:
    from app.org import service as org

    with db.write_txn() as s:
        county = org.ensure_county(s, ACTOR, code="341000", name="振风县")
        t = org.create_township(s, ACTOR, code=county.code + "101", name="城关镇")
        v = org.create_village(s, ACTOR, township_id=t.id, code=t.code + "001", name="红旗村")  # type: ignore[arg-type]
        for n in range(1, groups + 1):
            org.create_group(s, ACTOR, village_id=v.id, number=n)  # type: ignore[arg-type]
        return v.id  # type: ignore[return-value]


def fill_households(db: Database, village_ids: list[int], households: int, seed: int = 7, *,
                    members: bool = True) -> None:
    """Bulk-insert households with two members each, or none (setup, not measured)."""
    from app.core.pinyin import full_pinyin, initials
    from app.households.models import Household, Member
    from app.households.service.households import number_sort_key

    now = datetime.now().astimezone()
    maker = FamilyMaker(seed, 1)
    per_village = households // len(village_ids)
    with db.write_txn() as s:
        for vid in village_ids:
            hh_rows, names = [], []
            for n in range(1, per_village + 1):
                head = maker.surname() + maker.rng.choice("建国志强伟明军华平勇德文海林永春福庆荣忠成")
                spouse = maker.surname() + maker.rng.choice("秀英桂兰玉梅凤霞芳丽红春燕翠花")
                number = f"{n:05d}"
                hh_rows.append({"village_id": vid, "number": number, "number_sort": number_sort_key(number),
                                "head_name": head, "head_pinyin": full_pinyin(head), "status": "active",
                                "created_at": now, "updated_at": now})
                names.append((head, spouse))
            ids = list(s.execute(insert(Household).returning(Household.id, sort_by_parameter_order=True),  # type: ignore[call-overload]
                                 hh_rows).scalars())
            if not members:
                continue
            member_rows = []
            for hid, (head, spouse) in zip(ids, names, strict=True):
                for name, rel in ((head, "户主"), (spouse, "配偶")):
                    member_rows.append({"household_id": hid, "village_id": vid, "name": name,
                                        "name_pinyin": full_pinyin(name), "name_initials": initials(name),
                                        "relation": rel, "status": "present", "party_member": False,
                                        "living_away": False, "created_at": now, "updated_at": now})
            s.execute(insert(Member), member_rows)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def setup_villages(db: Database, villages: int) -> list[int]:
    """The first village (setup_village) and more in the same township (setup, not measured)."""
    from app.org import service as org

    first = setup_village(db)
    with db.write_txn() as s:
        t = org.list_townships(s, ScopeFilter(everything=True))[0]
        others = [org.create_village(s, ACTOR, township_id=t.id, code=f"{t.code}{i:03d}", name=f"测试{i}村").id  # type: ignore[arg-type]
                  for i in range(2, villages + 1)]
    return [first, *others]  # type: ignore[list-item]


def add_stores(db: Database, village_ids: list[int]) -> dict[int, int]:
    """One store per village: village id -> store id (setup, not measured)."""
    from app.org import service as org

    with db.write_txn() as s:
        return {vid: org.create_store(s, ACTOR, village_id=vid, name=f"振风超市{n}号店").id  # type: ignore[misc]
                for n, vid in enumerate(village_ids, 1)}


def household_villages(db: Database) -> list[tuple[int, int]]:
    """(household id, village id) of every household, in id order."""
    with db.read_txn() as s:
        return [(h, v) for h, v in s.execute(text("SELECT id, village_id FROM households ORDER BY id"))]


EVAL_CLERK = Actor(user_id=None, name="村文书（基准测试）", role="village_clerk")
EVAL_REVIEWER = Actor(user_id=None, name="乡镇审核员（基准测试）", role="township_reviewer")
EVAL_GRADES = ("优", "良", "中", "差")
EVAL_COMMITTEE = 5
EVAL_PASSWORD = "Bench-pass-2026"
REGISTERED = datetime(2024, 1, 1, tzinfo=UTC)  # households registered long before the months rated


def register_households(db: Database, village_ids: list[int], households: int) -> dict[int, list[int]]:
    """Households registered long ago (on every month's roster), spread over their village's groups where it has
    some; village id -> household ids (setup, not measured)."""
    fill_households(db, village_ids, households, members=False)
    group = "FROM village_groups g WHERE g.village_id = households.village_id AND g.number = households.id % 10 + 1"
    out: dict[int, list[int]] = {}
    with db.write_txn() as s:
        s.execute(text("UPDATE households SET created_at = :t, updated_at = :t"), {"t": REGISTERED})
        s.execute(text(f"UPDATE households SET group_id = (SELECT g.id {group}), group_sort = id % 10 + 1 "
                       f"WHERE EXISTS (SELECT 1 {group})"))
        for vid, hid in s.execute(text("SELECT village_id, id FROM households ORDER BY id")):
            out.setdefault(vid, []).append(hid)
    return out


def add_committees(db: Database, homes: dict[int, list[int]], size: int = EVAL_COMMITTEE) -> dict[int, list[int]]:
    """A committee of `size` in every village, each member granted the role and linked to a household; village id
    -> member user ids (setup, not measured)."""
    from app.auth import security
    from app.auth.service import accounts as auth
    from app.committee import service as committee
    from app.rulesets import service as rulesets

    security.set_hash_cost(memory_kib=1024, time_cost=1)  # setup: accounts that never log in here
    out: dict[int, list[int]] = {}
    with db.write_txn() as s:
        rulesets.ensure_default(s, EVAL_CLERK, from_month=202401)
        for vid, hids in homes.items():
            users = []
            for i in range(size):
                u = auth.create_user(s, ACTOR, login=f"wy{vid}m{i}", display_name=f"委员{vid}-{i + 1}",
                                     password=EVAL_PASSWORD, must_change_password=False)
                auth.grant_role(s, ACTOR, u.id, "committee_member", village_id=vid)  # type: ignore[arg-type]
                committee.link(s, EVAL_CLERK, vid, user_id=u.id, household_id=hids[i],  # type: ignore[arg-type]
                               title="主任" if i == 0 else "委员")
                users.append(u.id)
            out[vid] = users  # type: ignore[assignment]
    return out


class Grader:
    """Seeded consensus grades: each household has a character (mostly 良, some 优, a few 中 and 差), and 1 % are
    graded 环保卫生 差 every month (the black list's worst-grade rule posts them in the third month)."""

    def __init__(self, homes: dict[int, list[int]], seed: int = 17) -> None:
        self.rng = random.Random(seed)
        every = [h for hids in homes.values() for h in hids]
        self.character = {h: self.rng.random() * 0.9 for h in every}
        self.dirty = set(self.rng.sample(every, len(every) // 100))

    def cells(self, hids: list[int], themes: list[str]) -> list[Any]:
        from app.evaluation.service import rounds

        out = []
        for h in hids:
            for th in themes:
                x = self.character[h] + self.rng.random() * 0.5
                k = 0 if x > 1.05 else 1 if x > 0.55 else 2 if x > 0.2 else 3
                grade = "差" if th == "ENV" and h in self.dirty else EVAL_GRADES[k]
                out.append(rounds.Cell(h, th, grade))
        return out


def eval_days(month: int) -> tuple[date, date, datetime]:
    """(publicised on, finalised on, postings dated): publicity from the 2nd of the next month, five days of
    objections, finalised the day after, at 10:00 local time."""
    from app.core.clock import DISPLAY_ZONE
    from app.evaluation.service import rounds

    start = rounds.month_start(rounds.next_month(month)) + timedelta(days=1)
    on = start + timedelta(days=6)
    return start, on, datetime(on.year, on.month, on.day, 10, tzinfo=DISPLAY_ZONE).astimezone(UTC)


def publicised_round(s: Any, vid: int, month: int, members: list[int], hids: list[int], grader: Grader) -> int:
    """One village's round of a month through the services, up to publicised: opened (consensus, the committee
    present), every grade saved, two passed determinations (a 文明家庭 and a 不诚信户), submitted, approved, publicised
    (setup, not measured). The determinations are inserted as decided: their votes are not what is measured."""
    from app.core.clock import utcnow
    from app.evaluation.models import Motion
    from app.evaluation.service import rounds

    rnd = rounds.open_round(s, EVAL_CLERK, village_id=vid, month=month, mode="consensus", present=members)
    rid: int = rnd.id  # type: ignore[assignment]
    themes = [t.code for t in rounds.ruleset_of(s, rnd).themes]
    rounds.save_ratings(s, EVAL_CLERK, rid, grader.cells(hids, themes))
    now = utcnow()
    good, bad = grader.rng.sample(hids[EVAL_COMMITTEE:], 2)
    for hid, code, rule, what in ((good, "CIVILISED_FAMILY", "majority", "家风好、常年照顾邻居孤寡老人"),
                                  (bad, "DISHONEST", "two_thirds", "拖欠村民工钱半年未付")):
        s.add(Motion(village_id=vid, round_id=rid, kind="determination", household_id=hid, code=code,
                     description=what, evidence="村民证言", vote_rule=rule, status="passed",
                     proposed_by=EVAL_CLERK.name, decided_at=now))
    s.flush()
    rounds.submit(s, EVAL_CLERK, rid)
    rounds.approve(s, EVAL_REVIEWER, rid, "同意公示")
    rounds.publicise(s, EVAL_CLERK, rid, on=eval_days(month)[0])
    return rid


DASH_LATE_EVERY = 15  # every 15th village finalised three of its months late (after the 20th of the next month)
DASH_UPHELD_EVERY = 20  # every 20th village has four upheld objections in the year (the others one)


def _dash_template(db: Database, vid: int, hids: list[int], members: list[int], month: int) -> dict[str, Any]:
    """One village's round of `month` through the services, up to finalised, read back and rolled back: the shapes
    (roster entries, the results' lines, postings and grades, the list postings) the set-based months copy."""
    from app.evaluation.models import EvalRound, RoundResult
    from app.evaluation.service import rounds
    from app.lists.models import ListPosting

    grader = Grader({vid: hids})
    _, on, at = eval_days(month)
    with db.write_session() as s:
        rid = publicised_round(s, vid, month, members, hids, grader)
        rounds.finalise(s, EVAL_CLERK, rid, on=on, at=at)
        rnd = s.get(EvalRound, rid)
        assert rnd is not None
        out = {"roster": list(rnd.roster or []), "eligibility": rnd.eligibility, "present": rnd.present_member_ids,
               "code": rnd.ruleset_code, "version": rnd.ruleset_version,
               "results": [(r.total, r.lines, r.postings, r.grades) for r in s.query(RoundResult)
                           .filter(RoundResult.round_id == rid).order_by(RoundResult.household_id)],
               "postings": {p.list: (p.source, p.code, p.theme, p.reason, p.explanation)
                            for p in s.query(ListPosting).filter(ListPosting.round_id == rid)}}
        s.rollback()
    return out


def fill_dashboard(db: Database, year: int, villages: int, households: int, *,
                   store_rows: bool = True) -> dict[str, Any]:
    """A county's year of monthly closes (setup, not measured): DASH_VILLAGES villages in one township, DASH_HOUSEHOLDS
    households, a store each, and twelve finalised rounds per village, written set-based (INSERT … SELECT per month
    over every household at once), shaped on one village's round that went through the services (and was rolled
    back). Returns what was built (counts, seconds). Without `store_rows`, the year has no redemptions and the stores
    no stock: the set-based ones have no lines or stock movements (what `store verify` checks; the dashboard does not
    read them)."""
    import json

    from app.evaluation.models import EvalRound, Objection
    from app.evaluation.service import rounds
    from app.ledger import service as ledger
    from app.store.models import Item

    pg = not db.is_sqlite
    t0 = time.perf_counter()
    village_ids = setup_villages(db, villages)
    homes = register_households(db, village_ids, households)
    stores_of = add_stores(db, village_ids)
    first = village_ids[0]
    members = add_committees(db, {first: homes[first]})[first]  # also stores the county default ruleset
    months = [year * 100 + k for k in range(1, 13)]
    tpl = _dash_template(db, first, homes[first], members, months[0])
    t_services = time.perf_counter() - t0
    print(f"    dashboard: villages, households, stores, template round through the services: {t_services:.0f} s",
          flush=True)

    if not pg:  # a build: no need to wait for the disk at every commit
        event.listen(db.engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA synchronous=OFF"))
        db.engine.dispose()

    def refresh(conn: Any) -> None:
        """PostgreSQL: the planner's statistics of what was just written (autovacuum is off on the server here):
        without them every foreign-key check of a new row reads the whole parent table, planned when it was
        empty."""
        if pg:
            conn.execute(text("ANALYZE"))

    def at_sql(ts: datetime) -> str:
        return f"TIMESTAMPTZ '{ts:%Y-%m-%d %H:%M:%S}+00'" if pg else f"'{ts:%Y-%m-%d %H:%M:%S}.000000'"

    # rounds: one per village and month, finalised (the late villages: three months after the 20th of the next)
    roster_tpl = tpl["roster"]
    round_rows = []
    finalised_at: dict[tuple[int, int], datetime] = {}
    for i, vid in enumerate(village_ids):
        roster = [{**roster_tpl[k % len(roster_tpl)], "household_id": h} for k, h in enumerate(homes[vid])]
        for month in months:
            start, _on, at = eval_days(month)
            if i % DASH_LATE_EVERY == 0 and month % 100 in (3, 4, 7):
                at += timedelta(days=20)
            finalised_at[(vid, month)] = at
            round_rows.append({"village_id": vid, "month": month, "status": "finalised", "mode": "consensus",
                               "ruleset_code": tpl["code"], "ruleset_version": tpl["version"],
                               "present_member_ids": tpl["present"], "objection_days": 5,
                               "objections_close_on": start + timedelta(days=5), "roster": roster,
                               "eligibility": tpl["eligibility"], "roster_size": len(roster),
                               "households_rated": len(roster), "created_at": at - timedelta(days=10),
                               "created_by": EVAL_CLERK.name, "updated_at": at, "finalised_at": at})
    with db.write_txn() as s:
        for k in range(0, len(round_rows), 300):
            s.execute(insert(EvalRound), round_rows[k:k + 300])
        round_of = {(v, m): r for r, v, m in s.execute(text("SELECT id, village_id, month FROM eval_rounds"))}
    analyze(db)

    # the results' shapes: household h takes the template's result number h % K
    results = tpl["results"]
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_tpl (k INTEGER PRIMARY KEY, total INTEGER, lines JSON, postings JSON, "
                          "grades JSON)"))
        cast = (lambda p: f"CAST(:{p} AS JSON)") if pg else (lambda p: f":{p}")
        conn.execute(text(f"INSERT INTO bench_tpl VALUES (:k, :t, {cast('l')}, {cast('p')}, {cast('g')})"),
                     [{"k": k, "t": t, "l": json.dumps(ln, ensure_ascii=False), "p": json.dumps(p, ensure_ascii=False),
                       "g": json.dumps(g, ensure_ascii=False)} for k, (t, ln, p, g) in enumerate(results)])
    n_tpl = len(results)

    # the ledger: an award per household and month (the template's total, at the round's finalisation), and a
    # redemption in two months of the year (on the 20th of the month after; at most that month's award), in time
    # order, each household's chain 1, 2, 3 … with balance_after, built with window functions
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ledger_accounts (code, kind, village_id, household_id, store_id, balance, entry_count, "
            "created_at) SELECT 'household:' || id, 'household', village_id, id, NULL, 0, 0, created_at "
            "FROM households ORDER BY id"))
        conn.execute(text(
            "INSERT INTO ledger_accounts (code, kind, village_id, household_id, store_id, balance, entry_count, "
            "created_at) SELECT 'village:' || id || '\\:issue', 'issue', id, NULL, NULL, NULL, 0, created_at "
            "FROM villages"))
        conn.execute(text(
            "INSERT INTO ledger_accounts (code, kind, village_id, household_id, store_id, balance, entry_count, "
            "created_at) SELECT 'store:' || id || '\\:redeemed', 'redeemed', village_id, NULL, id, NULL, 0, created_at "
            "FROM stores"))
        refresh(conn)
        conn.execute(text(
            "CREATE TABLE bench_ev (household_id INTEGER, village_id INTEGER, account_id INTEGER, sink_id INTEGER, "
            "store_id INTEGER, round_id INTEGER, m INTEGER, kind VARCHAR(12), amount INTEGER, tx_month INTEGER, "
            f"at {'TIMESTAMPTZ' if pg else 'DATETIME'}, day DATE)"))
        for month in months:
            spend_day = rounds.month_start(rounds.next_month(month)) + timedelta(days=19)
            spend_at = datetime(spend_day.year, spend_day.month, spend_day.day, 6, tzinfo=UTC)
            by_village = {v: finalised_at[(v, month)] for v in village_ids}
            ats = sorted(set(by_village.values()))
            for at in ats:  # one statement per finalisation time (the late villages apart)
                vids = ", ".join(str(v) for v, a in by_village.items() if a == at)
                conn.execute(text(
                    "INSERT INTO bench_ev SELECT h.id, h.village_id, a.id, i.id, NULL, r.id, :m, 'award', t.total, "
                    f":txm, {at_sql(at)}, NULL FROM households h "
                    "JOIN ledger_accounts a ON a.household_id = h.id "
                    "JOIN ledger_accounts i ON i.kind = 'issue' AND i.village_id = h.village_id "
                    "JOIN eval_rounds r ON r.village_id = h.village_id AND r.month = :m "
                    f"JOIN bench_tpl t ON t.k = h.id % {n_tpl} WHERE t.total > 0 AND h.village_id IN ({vids})"),
                    {"m": month, "txm": ledger.month_of(at)})
            if not store_rows:
                continue
            conn.execute(text(
                "INSERT INTO bench_ev SELECT h.id, h.village_id, a.id, d.id, st.id, NULL, :m, 'redemption', "
                f"-(CASE WHEN t.total < 10 + h.id % 5 * 2 THEN t.total ELSE 10 + h.id % 5 * 2 END), :txm, "
                f"{at_sql(spend_at)}, :day FROM households h "
                "JOIN ledger_accounts a ON a.household_id = h.id JOIN stores st ON st.village_id = h.village_id "
                "JOIN ledger_accounts d ON d.store_id = st.id "
                f"JOIN bench_tpl t ON t.k = h.id % {n_tpl} WHERE t.total > 0 AND (h.id + :m) % 6 = 0"),
                {"m": month, "txm": ledger.month_of(spend_at), "day": spend_day})
        conn.execute(text(
            "CREATE TABLE bench_seq AS SELECT e.*, row_number() OVER (ORDER BY at, account_id) AS tx, "
            "row_number() OVER (PARTITION BY account_id ORDER BY at) AS seq, "
            "sum(amount) OVER (PARTITION BY account_id ORDER BY at ROWS UNBOUNDED PRECEDING) AS after FROM bench_ev e"))
        conn.execute(text(
            "INSERT INTO ledger_transactions (id, kind, village_id, month, memo, reference, actor_id, actor_name, "
            "occurred_at, idempotency_key, request_hash, reverses_id) SELECT tx, kind, village_id, tx_month, "
            "CASE WHEN kind = 'award' THEN '红黑榜评议：本月积分' ELSE '兑换：食用油 ×1' END, "
            "CASE WHEN kind = 'award' THEN 'round:' || round_id ELSE 'store:' || store_id END, NULL, "
            "CASE WHEN kind = 'award' THEN '村文书' ELSE '超市店员' END, at, "
            "CASE WHEN kind = 'award' THEN 'round:' || round_id || ':household:' || household_id ELSE NULL END, "
            "NULL, NULL FROM bench_seq ORDER BY tx"))
        refresh(conn)
        conn.execute(text(
            "INSERT INTO ledger_entries (id, transaction_id, account_id, amount, seq, balance_after) "
            "SELECT id, transaction_id, account_id, amount, seq, balance_after FROM ("
            "SELECT 2 * tx - 1 AS id, tx AS transaction_id, account_id, amount, seq, after AS balance_after "
            "FROM bench_seq UNION ALL SELECT 2 * tx, tx, sink_id, -amount, NULL, NULL FROM bench_seq) AS e ORDER BY id"))
        conn.execute(text("CREATE TABLE bench_bal AS SELECT account_id, sum(amount) AS balance, count(*) AS n "
                          "FROM bench_ev GROUP BY account_id"))
        conn.execute(text("CREATE UNIQUE INDEX bench_bal_account ON bench_bal (account_id)"))
        conn.execute(text(
            "UPDATE ledger_accounts SET balance = (SELECT b.balance FROM bench_bal b "
            "WHERE b.account_id = ledger_accounts.id), entry_count = (SELECT b.n FROM bench_bal b "
            "WHERE b.account_id = ledger_accounts.id) "
            "WHERE kind = 'household' AND id IN (SELECT account_id FROM bench_bal)"))
        conn.execute(text(
            "INSERT INTO redemptions (store_id, household_id, village_id, card_id, card_version, identified_by, "
            "identity_note, points, value_fen, balance_after, ledger_tx_id, status, day, idempotency_key, request_hash, "
            "actor, created_at) SELECT store_id, household_id, village_id, NULL, NULL, 'card', NULL, -amount, "
            "-amount * 10, after, tx, "
            "'done', day, NULL, NULL, '超市店员', at FROM bench_seq WHERE kind = 'redemption' ORDER BY tx"))
        # eval_results: every household of every round, its award transaction beside it
        conn.execute(text("CREATE INDEX bench_seq_round ON bench_seq (round_id, household_id)"))
        for month in months:
            conn.execute(text(
                "INSERT INTO eval_results (round_id, household_id, total, lines, postings, grades, note, ledger_tx_id) "
                "SELECT r.id, h.id, t.total, t.lines, t.postings, t.grades, '', q.tx FROM households h "
                "JOIN eval_rounds r ON r.village_id = h.village_id AND r.month = :m "
                f"JOIN bench_tpl t ON t.k = h.id % {n_tpl} "
                "LEFT JOIN bench_seq q ON q.round_id = r.id AND q.household_id = h.id ORDER BY r.id, h.id"),
                {"m": month})
        # list postings: a fifth of the households on the red list each month, one in fifty on the black list
        # (pseudo-random per household and month), shown for two months
        red = tpl["postings"].get("red", ("rule", "RED_TOP", None, "本月评议总分居前", "本月评议总分居全村前列"))
        black = tpl["postings"].get("black", ("rule", "BLACK_WORST", "ENV", "环保卫生连续三个月为差",
                                              "环保卫生连续三个月评为差"))
        x = "((CAST(h.id AS BIGINT) * 7919 + CAST(r.month AS BIGINT) * 104729) % 1000003 * 31 % 100)"
        for month in months:
            for lst, (source, code, theme, reason, expl), cond in (("red", red, f"{x} < 20"),
                                                                   ("black", black, f"{x} >= 98")):
                conn.execute(text(
                    "INSERT INTO list_postings (round_id, village_id, household_id, list, source, code, theme, "
                    "member_id, member_name, reason, explanation, from_month, to_month, status, motion_id, "
                    "objection_id, created_at) SELECT r.id, r.village_id, h.id, :list, :source, :code, :theme, NULL, "
                    "NULL, :reason, :expl, r.month, :to, :status, NULL, NULL, r.finalised_at FROM households h "
                    f"JOIN eval_rounds r ON r.village_id = h.village_id AND r.month = :m WHERE {cond} ORDER BY h.id"),
                    {"list": lst, "source": source, "code": code, "theme": theme, "reason": reason, "expl": expl,
                     "m": month, "to": rounds.add_months(month, 1),
                     "status": "effective" if month >= months[-2] else "expired"})
        conn.execute(text("DROP TABLE bench_bal"))
        conn.execute(text("DROP TABLE bench_seq"))
        conn.execute(text("DROP TABLE bench_ev"))
        conn.execute(text("DROP TABLE bench_tpl"))
        if pg:
            for table in ("ledger_transactions", "ledger_entries"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"))
    # objections (three a village in the year; every DASH_UPHELD_EVERY-th village four upheld, the others one) and a
    # store's stock (four items)
    rng = random.Random(29)
    objection_rows, item_rows = [], []
    for i, vid in enumerate(village_ids):
        upheld = 4 if i % DASH_UPHELD_EVERY == 0 else 1
        for k in range(max(3, upheld)):
            month = rng.choice(months)
            at = finalised_at[(vid, month)] - timedelta(days=3)
            objection_rows.append({"round_id": round_of[(vid, month)], "household_id": rng.choice(homes[vid]),
                                   "target": "rating", "theme": "ENV", "text": "邻居说我家门前不干净，不属实",
                                   "on_paper": False, "filed_by": "村民", "created_at": at,
                                   "status": "upheld" if k < upheld else "rejected", "resolution": "经核实",
                                   "resolved_by": EVAL_CLERK.name, "resolved_at": at, "after_finalisation": False})
        for name, points, cost in (("食用油", 50, 5_900), ("洗衣粉", 20, 1_500), ("大米", 60, 6_500), ("毛巾", 10, 800)):
            if not store_rows:
                break
            stock = rng.randrange(20, 200)
            item_rows.append({"store_id": stores_of[vid], "name": name, "unit": "件", "category": "日用品",
                              "points": points, "cost_fen": cost, "low_stock": 10, "active": True, "stock": stock,
                              "stock_value_fen": stock * cost, "created_at": REGISTERED, "updated_at": REGISTERED})
    with db.write_txn() as s:
        s.execute(insert(Objection), objection_rows)
        if item_rows:
            s.execute(insert(Item), item_rows)
        # the summaries the posting and the finalisation keep, from what was written directly above
        ledger.rebuild_month_totals(s)
        rounds.rebuild_list_counts(s)
    with db.read_txn() as s:
        counts = {t: int(s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                  for t in ("households", "eval_rounds", "eval_results", "list_postings", "ledger_transactions",
                            "ledger_entries", "redemptions", "eval_objections")}
        counts["red"] = int(s.execute(text("SELECT count(*) FROM list_postings WHERE list = 'red'")).scalar_one())
    t_set = time.perf_counter() - t0 - t_services
    print(f"    dashboard: set-based months: {t_set:.0f} s, {counts}", flush=True)
    t1 = time.perf_counter()
    with db.read_txn() as s:
        problems = ledger.verify(s)
    assert not problems, problems[:3]
    t_verify = time.perf_counter() - t1
    settle(db)
    return {"villages": village_ids, "counts": counts, "services": t_services, "set_based": t_set,
            "verify": t_verify, "template_households": len(results), "setup": time.perf_counter() - t0}
