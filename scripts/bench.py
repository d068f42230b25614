#!/usr/bin/env python3
"""振风超市 benchmarks: every figure next to a baseline measured in the same run, on SQLite and PostgreSQL.

    uv run python scripts/bench.py                 # full size, both databases, writes docs/benchmarks.md
    uv run python scripts/bench.py --quick         # a tenth of the size, for a quick look
    uv run python scripts/bench.py --db sqlite     # one database only
    ZF_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test  (default) names the server; the bench creates and
    drops its own database `zf_bench` there.

Each benchmark is a function (db_url, scale) -> list[Row]; add new ones to BENCHMARKS.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app import migrate  # noqa: E402
from app.core.context import Actor  # noqa: E402
from app.core.scope import ScopeFilter  # noqa: E402
from app.db import Database  # noqa: E402
from app.demo_people import FamilyMaker  # noqa: E402

ACTOR = Actor.system("基准测试")


@dataclass
class Row:
    name: str
    db: str
    figure: str
    baseline: str
    ratio: float | None
    aim: str
    ok: bool | None


# ---- databases ----------------------------------------------------------------------------------------------------

def fresh_db(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        path = workdir / f"bench-{time.time_ns()}.db"
        url = f"sqlite:///{path}"
    else:
        base = make_url(os.environ.get("ZF_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
        admin = create_engine(base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "zf_bench" WITH (FORCE)'))
            conn.execute(text('CREATE DATABASE "zf_bench"'))
        admin.dispose()
        url = base.set(database="zf_bench").render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def setup_village(db: Database, groups: int = 10) -> int:
    from app.org import service as org

    with db.write_txn() as s:
        county = org.ensure_county(s, ACTOR, code="341000", name="振风县")
        t = org.create_township(s, ACTOR, code=county.code + "101", name="城关镇")
        v = org.create_village(s, ACTOR, township_id=t.id, code=t.code + "001", name="红旗村")  # type: ignore[arg-type]
        for n in range(1, groups + 1):
            org.create_group(s, ACTOR, village_id=v.id, number=n)  # type: ignore[arg-type]
        return v.id  # type: ignore[return-value]


# ---- roster import ------------------------------------------------------------------------------------------------

HEADERS = ["户号", "村民小组", "姓名", "与户主关系", "性别", "出生日期", "身份证号", "联系电话", "是否党员", "是否外出务工",
           "家庭住址"]


def roster_xlsx(members: int, seed: int = 1) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("花名册")
    ws.append(HEADERS)
    maker = FamilyMaker(seed, 0)
    n = count = 0
    while count < members:
        n += 1
        group = maker.rng.randrange(1, 11)
        for p in maker.family():
            if count >= members:
                break
            ws.append([f"{n:05d}", f"{group}组", p.name, p.relation, p.gender, p.birth.isoformat(), p.id_number,
                       p.phone or "", "是" if p.party_member else "否", "是" if p.living_away else "否",
                       f"{group}组{n}号" if p.relation == "户主" else ""])
            count += 1
        if count and p.relation == "户主" and count >= members:  # never leave a household without its head
            break
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def bench_roster_import(url: str, scale: float) -> list[Row]:
    import python_calamine

    from app.households import imports

    members = int(100_000 * scale)
    data = roster_xlsx(members)
    db = Database(url)
    village_id = setup_village(db)

    # baseline: read the same file with calamine, then a bare executemany insert of the same rows
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_roster (number VARCHAR(20), grp VARCHAR(20), name VARCHAR(40), "
                          "relation VARCHAR(10), gender VARCHAR(2), birth VARCHAR(10), id_number VARCHAR(18), "
                          "phone VARCHAR(20), party VARCHAR(2), away VARCHAR(2), address VARCHAR(200))"))
    t0 = time.perf_counter()
    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    cells = wb.get_sheet_by_index(0).to_python()
    rows = [dict(zip(("number", "grp", "name", "relation", "gender", "birth", "id_number", "phone", "party", "away",
                      "address"), (str(c) for c in r), strict=False)) for r in cells[1:]]
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO bench_roster VALUES (:number, :grp, :name, :relation, :gender, :birth, "
                          ":id_number, :phone, :party, :away, :address)"), rows)
    baseline = time.perf_counter() - t0

    t0 = time.perf_counter()
    with db.write_txn() as s:
        batch = imports.preview(s, ACTOR, village_id=village_id, file_name="bench.xlsx", data=data)
        batch_id = batch.id
        assert not [p for p in batch.problems if p["severity"] == "error"], batch.problems[:3]
    t_preview = time.perf_counter() - t0
    t1 = time.perf_counter()
    with db.write_txn() as s:
        result = imports.apply(s, ACTOR, village_id=village_id, batch_id=batch_id)  # type: ignore[arg-type]
    t_apply = time.perf_counter() - t1
    total = t_preview + t_apply
    assert result["members_new"] == len(rows), result

    # importing the same file again: checks everything, writes nothing
    t2 = time.perf_counter()
    with db.write_txn() as s:
        b2 = imports.preview(s, ACTOR, village_id=village_id, file_name="bench.xlsx", data=data)
        again = imports.apply(s, ACTOR, village_id=village_id, batch_id=b2.id)  # type: ignore[arg-type]
    t_again = time.perf_counter() - t2
    assert again["members_unchanged"] == len(rows), again
    db.dispose()
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    return [
        Row(f"花名册导入 {len(rows):,} 名成员（.xlsx，预览 {t_preview:.1f} s + 确认 {t_apply:.1f} s）", kind,
            f"{total:.2f} s", f"{baseline:.2f} s（calamine 读取 + executemany 插入）", total / baseline, "≤ 3×",
            total / baseline <= 3),
        Row(f"同一文件再次导入（全部无变化，{len(rows):,} 名成员）", kind, f"{t_again:.2f} s", f"{baseline:.2f} s",
            t_again / baseline, "—", None),
    ]


# ---- search -------------------------------------------------------------------------------------------------------

def fill_households(db: Database, village_ids: list[int], households: int, seed: int = 7) -> None:
    """Bulk-insert households with two members each (setup, not measured)."""
    from app.core.pinyin import full_pinyin, initials
    from app.households.models import Household, Member
    from app.households.service import number_sort_key

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
            ids = list(s.execute(insert(Household).returning(Household.id, sort_by_parameter_order=True),
                                 hh_rows).scalars())
            members = []
            for hid, (head, spouse) in zip(ids, names, strict=True):
                for name, rel in ((head, "户主"), (spouse, "配偶")):
                    members.append({"household_id": hid, "village_id": vid, "name": name,
                                    "name_pinyin": full_pinyin(name), "name_initials": initials(name), "relation": rel,
                                    "status": "present", "party_member": False, "living_away": False,
                                    "created_at": now, "updated_at": now})
            s.execute(insert(Member), members)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def _percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def bench_search(url: str, scale: float) -> list[Row]:
    from app.households import service as hh
    from app.org import service as org

    households = int(100_000 * scale)
    db = Database(url)
    first = setup_village(db)
    with db.write_txn() as s:
        t = org.list_townships(s, ScopeFilter(everything=True))[0]
        others = [org.create_village(s, ACTOR, township_id=t.id, code=f"{t.code}{i:03d}", name=f"测试{i}村").id  # type: ignore[arg-type]
                  for i in range(2, 11)]
    villages = [first, *others]
    fill_households(db, villages, households)
    rng = random.Random(3)
    queries = ["".join(rng.choice("wlzlcyhzwzxsmzhglhgl") + rng.choice("jgzwmjhpydwhlycfqrzc")) for _ in range(200)]
    own = ScopeFilter(village_ids=frozenset({first}))
    county = ScopeFilter(everything=True)
    rows: list[Row] = []
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    for label, flt, vid in (("本村（村文书）", own, first), ("全县（县管理员）", county, None)):
        for q in queries[:20]:  # warm the connection pool and the caches: the figure is the steady state
            with db.read_txn() as s:
                hh.search(s, flt, q=q, village_id=vid, limit=50)
        times = []
        for q in queries:
            t0 = time.perf_counter()
            with db.read_txn() as s:
                hh.search(s, flt, q=q, village_id=vid, limit=50)
            times.append((time.perf_counter() - t0) * 1000)
        med, p99 = statistics.median(times), _percentile(times, 99)
        # baseline: the same number of round trips doing a trivial indexed lookup
        base = []
        for _q in queries:
            t0 = time.perf_counter()
            with db.read_txn() as s:
                s.execute(text("SELECT id FROM households WHERE id = :i"), {"i": 1}).all()
            base.append((time.perf_counter() - t0) * 1000)
        rows.append(Row(f"拼音首字母查找，{households:,} 户中{label}：中位数 {med:.1f} ms", kind, f"p99 {p99:.1f} ms",
                        f"{statistics.median(base):.2f} ms（按主键取一行）", None, "p99 < 50 ms", p99 < 50))
    db.dispose()
    return rows


BENCHMARKS: dict[str, Callable[[str, float], list[Row]]] = {
    "roster_import": bench_roster_import,
    "search": bench_search,
}


# ---- report -------------------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1048576:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    pg = ""
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import sqlite3

    return (f"{os.cpu_count()} cores ({cpu}){mem}; Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; "
            f"{pg or 'PostgreSQL ?'}")


def report(rows: list[Row], scale: float, seconds: float) -> str:
    lines = [
        "# 振风超市 benchmarks",
        "",
        f"Run {datetime.now():%Y-%m-%d %H:%M} with `scripts/bench.py{' --quick' if scale < 1 else ''}` "
        f"(scale {scale}, {seconds:.0f} s). Machine: {machine()}.",
        "",
        "Every figure is measured next to its baseline in the same run, on the same database.",
        "",
        "| benchmark | database | figure | baseline | ratio | aim | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "—"
        met = "—" if r.ok is None else ("yes" if r.ok else "**no**")
        lines.append(f"| {r.name} | {r.db} | {r.figure} | {r.baseline} | {ratio} | {r.aim} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the full size")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    scale = 0.1 if args.quick else 1.0
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            for kind in kinds:
                print(f"==> {name} on {kind}", flush=True)
                url = fresh_db(kind, Path(tmp))
                for r in fn(url, scale):
                    print(f"    {r.name}: {r.figure} vs {r.baseline}", flush=True)
                    rows.append(r)
    text_ = report(rows, scale, time.perf_counter() - started)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text_)
    print(text_)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    date.today()
    raise SystemExit(main())
