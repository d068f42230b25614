"""roster_import: a village roster (.xlsx) previewed and applied through app.households.service.imports."""

from __future__ import annotations

import io
import time

from sqlalchemy import text

from app.db import Database
from app.demo.people import FamilyMaker
from scripts.bench.common import ACTOR, Row
from scripts.bench.county import setup_village

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

    from app.households.service import imports

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
