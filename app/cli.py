"""`zhenfeng ...` / `python -m app ...`: serve, migrate, create-admin, demo, audit verify|anchor, notices verify,
ledger verify|expire, ledger rebuild-summaries, store verify, lists expire|erase, rules import|export|assign, backup.

Every command honours ZF_DATABASE_URL. Exit codes: 0 ok, 1 a check found problems, 2 bad usage or setup.
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from app.config import Settings, UnsafeSettingsError, get_settings


def _db(settings: Settings):  # type: ignore[no-untyped-def]
    from app.db import Database

    return Database(settings.database_url)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from app import migrate
    from app.core.context import Actor
    from app.org import service as org

    migrate.upgrade(settings.database_url, args.revision)
    from app.notices.service import notices

    db = _db(settings)
    with db.write_txn() as session:
        county = org.ensure_county(session, Actor.system("迁移"), code=settings.county_code, name=settings.county_name)
        refused = notices.seal_unsealed(session, Actor.system("迁移"), notices.notice_key(settings.secret_key))
    print(f"数据库已升级到最新结构（{args.revision}）；县：{county.name}（{county.code}）")
    if refused:
        print(f"有 {len(refused)} 份旧公示与审计链的记录不符，未加密封（公开页面上显示为不是真实有效的）："
              + "、".join(notices.display_code(c) for c in refused))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from app.demo import loader as demo

    db = _db(settings)
    with db.write_txn() as session:
        if not demo.is_empty(session):
            print("数据库中已有账号，未装入演示数据（演示数据只装入空数据库）。")
            return 0 if args.if_empty else 2
        accounts = demo.load(session, settings, households_per_village=max(1, args.households),
                             history_months=max(2, args.months))
    print(demo.describe(accounts))
    return 0


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth.models import Role
    from app.auth.security import generate_password
    from app.auth.service import accounts as auth
    from app.core.context import Actor
    from app.errors import AppError

    password = args.password
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("新管理员密码（至少 8 位）：")
        else:
            password, generated = generate_password(), True
    db = _db(settings)
    try:
        with db.write_txn() as session:
            actor = Actor.system("命令行")
            user = auth.create_user(session, actor, login=args.login, display_name=args.name, password=password,
                                    must_change_password=generated)
            auth.grant_role(session, actor, user.id, Role.COUNTY_ADMIN.value)
    except AppError as e:
        print(f"未能创建：{e.message}", file=sys.stderr)
        return 2
    print(f"已创建县管理员 {args.login}" + (f"，临时密码：{password}（只显示这一次，首次登录须修改）" if generated else ""))
    return 0


def cmd_set_password(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.auth.models import User
    from app.auth.security import generate_password
    from app.auth.service import accounts as auth
    from app.core.context import Actor
    from app.errors import AppError

    password = generate_password()
    db = _db(settings)
    try:
        with db.write_txn() as session:
            user = session.execute(select(User).where(User.login == args.login.strip().lower())).scalar_one_or_none()
            if user is None:
                print(f"没有登录名为 {args.login} 的账号", file=sys.stderr)
                return 2
            auth.admin_reset_password(session, Actor.system("命令行"), user.id, password)
    except AppError as e:
        print(f"未能重置：{e.message}", file=sys.stderr)
        return 2
    print(f"{args.login} 的临时密码：{password}（只显示这一次，登录后须修改）")
    return 0


def _anchors_from_args(settings: Settings, values: list[str] | str | None) -> tuple[list, list[str]]:
    """`--anchor SEQ:HASH` (copied from paper or the public portal) or `--anchor FILE` (from `audit anchor`)."""
    from app.audit import service as audit

    if isinstance(values, str):
        values = [values]

    found: list[audit.Anchor] = []
    bad: list[str] = []
    for value in values or []:
        seq, sep, h = value.partition(":")
        if sep and seq.strip().isdigit() and len(h.strip()) == 64 and not Path(value).exists():
            found.append(audit.Anchor(int(seq), h.strip().lower(), f"链头 {seq}:{h.strip()[:12]}…"))
            continue
        path = Path(value)
        try:
            found.append(audit.read_anchor(path.read_text(encoding="utf-8"), key=audit.anchor_key(settings.secret_key),
                                           name=path.name))
        except OSError:
            bad.append(f"读不到锚点文件 {value}")
        except audit.BadAnchorFile as e:
            bad.append(str(e))
    return found, bad


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """The chain, and every anchor known: each notice's printed head (from the database) and the anchors given."""
    from app.audit import service as audit
    from app.notices.service import notices

    given, bad = _anchors_from_args(settings, args.anchor)
    if bad:
        for message in bad:
            print(message, file=sys.stderr)
        return 2
    db = _db(settings)
    with db.read_txn() as session:
        printed = notices.anchors(session)
        problems = audit.verify(session, anchors=[*given, *printed])
        seq, h = audit.head(session)
    if problems:
        print(f"审计链校验失败：发现 {len(problems)} 处问题")
        for p in problems:
            print(f"- [{p.kind}] {p.message}" + (f"（id={p.event_id}）" if p.event_id else ""))
        return 1
    print(f"审计链完好：共 {seq} 条事件，链头 {seq}:{h}；核对了 {len(printed)} 份公示上印的链头"
          + (f"和 {len(given)} 个锚点" if given else ""))
    return 0


def cmd_audit_anchor(settings: Settings, args: argparse.Namespace) -> int:
    """Write the chain's current head to a small file to keep off the machine."""
    import json

    from app.audit import service as audit

    db = _db(settings)
    with db.read_txn() as session:
        doc = audit.anchor_document(session, county=settings.county_code, key=audit.anchor_key(settings.secret_key))
    text_ = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if args.out in (None, "-"):
        sys.stdout.write(text_)
    else:
        Path(args.out).write_text(text_, encoding="utf-8")
        print(f"已写出审计链锚点：第 {doc['seq']} 号 {doc['hash']}（{args.out}）；请把它存到这台机器以外的地方")
    return 0


def cmd_notices_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Every notice (or those named) against its content hash, the audit chain's record and its seal."""
    from app.notices.service import notices

    db = _db(settings)
    with db.read_txn() as session:
        bad = notices.verify_all(session, notices.notice_key(settings.secret_key), codes=args.codes)
        total = notices.count(session)
    if bad:
        print(f"公示校验失败：{len(bad)} 份公示不是真实有效的")
        for n, c in bad:
            print(f"- {notices.display_code(n.code)}（id={n.id}，{n.title}）：" + "；".join(c.problems))
        return 1
    print(f"公示完好：{total} 份公示都与审计链的记录和密封相符")
    return 0


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    from app.ledger import service as ledger

    db = _db(settings)
    with db.read_txn() as session:
        problems = ledger.verify(session)
        n = ledger.transaction_count(session)
    if problems:
        print(f"积分账本校验失败：发现 {len(problems)} 处问题")
        for p in problems:
            print(f"- [{p.kind}] {p.message}")
        return 1
    print(f"积分账本完好：共 {n} 笔交易；每笔借贷平衡，各户余额与明细相符，结余链连续，无透支，无重复冲正")
    return 0


def cmd_ledger_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    """Rewrite the summaries the dashboards read (points per village, month and kind; households on the lists per
    village and period, the frozen years kept) from the book and the postings: the repair when `ledger verify`
    reports summary_mismatch. The book itself is never changed."""
    from app.audit import service as audit
    from app.core.context import Actor
    from app.ledger import service as ledger
    from app.lists import service as lists

    db = _db(settings)
    with db.write_txn() as session:
        months = ledger.rebuild_month_totals(session)
        years = lists.rebuild_list_counts(session)
        audit.record(session, Actor.system("重建汇总"), "ledger.rebuild_summaries", object_type="ledger",
                     after={"month_total_rows": months, "village_years": years})
    print(f"已按账本重建汇总：{months} 行月度积分汇总，{years} 个村年度的红黑榜户数（已删除个人信息的年度保留原数）")
    return 0


def cmd_store_verify(settings: Settings, args: argparse.Namespace) -> int:
    """The three books agree: stock = its movements, each fund's spent money = its purchases, each redemption has its
    ledger transaction and stock movements (and its reversal and returned goods if voided), and the other way
    round. The ledger's own proof runs first: a store proof on a broken ledger would prove nothing."""
    from app.ledger import service as ledger
    from app.store.service import stores

    db = _db(settings)
    with db.read_txn() as session:
        ledger_problems = ledger.verify(session)
        problems, counts = stores.verify(session)
    if ledger_problems or problems:
        print(f"超市账目校验失败：积分账本 {len(ledger_problems)} 处问题，超市账目 {len(problems)} 处问题")
        for lp in ledger_problems:
            print(f"- [ledger:{lp.kind}] {lp.message}")
        for sp in problems:
            print(f"- [{sp.kind}] {sp.message}")
        return 1
    print(f"超市账目完好：{counts['items']} 种商品的库存与 {counts['movements']} 条出入库记录相符；"
          f"{counts['funds']} 笔资金的支出与采购相符；{counts['redemptions']} 笔兑换都有对应的积分交易和出库记录"
          "（作废的都已冲正、退回库存），积分台账里的每笔兑换都有兑换记录")
    return 0


def cmd_lists_expire(settings: Settings, args: argparse.Namespace) -> int:
    """Store `expired` on red and black postings whose period is over (the views already hide them; run daily)."""
    from app.core.context import Actor
    from app.lists import service as lists

    db = _db(settings)
    with db.write_txn() as session:
        n = lists.expire_due(session, Actor.system("红黑榜期满"))
    print(f"红黑榜期满：{n} 条记录改为“已期满”" if n else "没有到期的红黑榜记录")
    return 0


def cmd_lists_erase(settings: Settings, args: argparse.Namespace) -> int:
    """Erase the personal details of list records older than the retention period (ZF_LIST_RETENTION_YEARS, or
    --years); the counts stay in the statistics. Run monthly; --dry-run only says what would be erased."""
    from app.core.context import Actor
    from app.lists import service as lists

    years = args.years or settings.list_retention_years
    db = _db(settings)
    with db.write_txn() as session:
        run = lists.erase_due(session, Actor.system("红黑榜保存期限"), years=years, dry_run=args.dry_run)
    what = (f"公示期在 {run.cutoff_month // 100} 年 {run.cutoff_month % 100} 月以前结束的红黑榜记录（保存 {years} 年）："
            f"{run.postings} 条记录、{run.rectifications} 份整改方案、{run.visits} 次回访记录，涉及 {len(run.years)} 个村年度")
    if not run.postings:
        print(f"没有超过保存期限（{years} 年）的红黑榜记录")
    elif args.dry_run:
        print(f"将删除个人信息的{what}（试运行，没有改动）")
    else:
        print(f"已删除个人信息的{what}；各村各年的统计数字已保留")
    return 0


def cmd_ledger_expire(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date

    from app.core.clock import to_local, utcnow
    from app.core.context import Actor
    from app.errors import AppError
    from app.ledger import service as ledger

    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else (to_local(utcnow()) or utcnow()).date()
    except ValueError:
        print(f"日期格式不对：{args.as_of}，应为 2028-01-01", file=sys.stderr)
        return 2
    today = (to_local(utcnow()) or utcnow()).date()
    if (as_of - today).days > 1:  # expiry cannot be reversed: a mistyped year must not wipe valid points
        print(f"清零截至日期不能晚于明天（今天是 {today}）：{as_of}", file=sys.stderr)
        return 2
    db = _db(settings)
    try:
        with db.write_txn() as session:
            policy = ledger.get_policy(session)
            run = ledger.expire(session, Actor.system("积分清零命令"), as_of=as_of,
                                village_ids=args.village or None)
    except AppError as e:
        print(f"未能清零：{e.message}", file=sys.stderr)
        return 2
    if run.households == 0:
        print(f"截至 {as_of}（不含当天）没有到期未用的积分；现行规则：{policy.label}")
    else:
        print(f"已为 {run.households} 户记入到期清零，共 {run.points} 分（截至 {as_of}，不含当天）；"
              f"交易号 {run.transaction_ids[0]}–{run.transaction_ids[-1]}")
    return 0


def cmd_rules_import(settings: Settings, args: argparse.Namespace) -> int:
    from app.core.context import Actor
    from app.errors import AppError
    from app.rulesets import service as rulesets

    path = Path(args.file)
    if not path.is_file():
        print(f"找不到文件：{path}", file=sys.stderr)
        return 2
    db = _db(settings)
    try:
        with db.write_txn() as session:
            row = rulesets.import_toml(session, Actor.system("命令行"), path.read_bytes())
            label = rulesets.month_label(row.effective_from)
    except AppError as e:
        print(f"未能导入：{e.message}", file=sys.stderr)
        for problem in (e.details or {}).get("problems", []) if isinstance(e.details, dict) else []:
            print(f"- {problem}", file=sys.stderr)
        return 2
    print(f"已导入积分细则 {row.code} 第 {row.version} 版（{row.name}），自{label}起生效")
    return 0


def cmd_rules_export(settings: Settings, args: argparse.Namespace) -> int:
    from app.errors import AppError
    from app.rulesets import service as rulesets

    db = _db(settings)
    try:
        with db.read_txn() as session:
            data, name, _media = rulesets.export_file(session, args.code, args.version)
    except AppError as e:
        print(e.message, file=sys.stderr)
        return 2
    out = Path(args.out or name)
    out.write_bytes(data)
    print(f"已导出到 {out}")
    return 0


def cmd_rules_assign(settings: Settings, args: argparse.Namespace) -> int:
    from app.core.context import Actor
    from app.errors import AppError
    from app.rulesets import service as rulesets

    db = _db(settings)
    try:
        with db.write_txn() as session:
            rulesets.assign(session, Actor.system("命令行"), code=args.code, from_month=args.from_month,
                            village_id=args.village)
    except AppError as e:
        print(f"未能指定：{e.message}", file=sys.stderr)
        return 2
    where = f"村 {args.village}" if args.village else "全县"
    print(f"{where}自{rulesets.month_label(args.from_month)}起使用积分细则 {args.code}")
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        src_path = Path(url.database or "")
        if not src_path.exists():
            print(f"找不到数据库文件：{src_path}", file=sys.stderr)
            return 2
        out_dir = Path(args.out or settings.var_dir / "backups")
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / f"zhenfeng-{datetime.now().strftime('%Y%m%d-%H%M%S')}.db"
        src = sqlite3.connect(str(src_path))
        dst = sqlite3.connect(str(dest))
        try:
            with dst:
                src.backup(dst)  # SQLite online backup: consistent even while the service writes
        finally:
            dst.close()
            src.close()
        print(f"已备份到 {dest}")
        return 0
    if url.get_backend_name() == "postgresql":
        host = url.host or "127.0.0.1"
        parts = ["pg_dump", "--format=custom", f"--host={host}", f"--port={url.port or 5432}"]
        if url.username:
            parts.append(f"--username={url.username}")
        parts += [f"--file=zhenfeng-{datetime.now().strftime('%Y%m%d-%H%M%S')}.dump", url.database or ""]
        print("PostgreSQL 请用 pg_dump 备份（可在服务运行时执行，得到一致的快照）：")
        print(" ".join(parts))
        print("恢复：createdb 新库 && pg_restore --dbname=新库 备份文件")
        return 0
    print(f"不支持的数据库：{url.get_backend_name()}", file=sys.stderr)
    return 2


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    workers = args.workers or settings.workers
    if settings.is_sqlite and workers > 1:
        print("SQLite 只能由一个进程写入：--workers 必须为 1；多进程请使用 PostgreSQL", file=sys.stderr)
        return 2
    settings.check_safe()
    # SlowClientProtocol: uvicorn's HTTP protocol with a time limit on request headers (ZF_HEADER_TIMEOUT_SECONDS)
    uvicorn.run("app.main:create_app", factory=True, host=args.host or settings.host, port=args.port or settings.port,
                workers=workers, proxy_headers=True, access_log=False, log_level="warning",
                http="app.web.middleware:SlowClientProtocol", timeout_keep_alive=settings.keep_alive_seconds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhenfeng", description="振风超市 管理命令")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="启动网页服务")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.set_defaults(func=cmd_serve)
    m = sub.add_parser("migrate", help="把数据库升级到最新结构")
    m.add_argument("--revision", default="head")
    m.set_defaults(func=cmd_migrate)
    a = sub.add_parser("create-admin", help="创建县管理员账号")
    a.add_argument("login")
    a.add_argument("--name", default="县管理员")
    a.add_argument("--password", help="不给出时：终端里提示输入；非终端时生成临时密码")
    a.set_defaults(func=cmd_create_admin)
    sp = sub.add_parser("set-password", help="为账号生成新的临时密码（忘记密码时）")
    sp.add_argument("login")
    sp.set_defaults(func=cmd_set_password)
    d = sub.add_parser("demo", help="向空数据库装入演示数据")
    d.add_argument("--if-empty", action="store_true", help="数据库非空时安静地跳过")
    d.add_argument("--households", type=int, default=250, help="每村户数（默认 250）")
    d.add_argument("--months", type=int, default=12, help="第一个村评比历史的月数（默认 12）")
    d.set_defaults(func=cmd_demo)
    au = sub.add_parser("audit", help="审计日志")
    au_sub = au.add_subparsers(dest="audit_command", required=True)
    v = au_sub.add_parser("verify", help="校验审计哈希链")
    v.add_argument("--anchor", action="append",
                   help="链头（序号:哈希，抄自纸质公示或公开页面）或 audit anchor 写出的锚点文件；可重复。"
                        "数据库里每份公示上印的链头总会核对")
    v.set_defaults(func=cmd_audit_verify)
    an = au_sub.add_parser("anchor", help="写出审计链当前的链头（锚点文件），存到这台机器以外的地方")
    an.add_argument("--out", help="输出文件（默认：显示在屏幕上）")
    an.set_defaults(func=cmd_audit_anchor)
    no = sub.add_parser("notices", help="公示")
    no_sub = no.add_subparsers(dest="notices_command", required=True)
    nv = no_sub.add_parser("verify", help="逐份核对公示：内容指纹、审计链上生成时的记录、密封")
    nv.add_argument("codes", nargs="*", help="只核对这些编号（默认：全部）")
    nv.set_defaults(func=cmd_notices_verify)
    lg = sub.add_parser("ledger", help="积分账本")
    lg_sub = lg.add_subparsers(dest="ledger_command", required=True)
    lv = lg_sub.add_parser("verify", help="校验积分账本（借贷平衡、余额、结余链、透支、重复冲正）")
    lv.set_defaults(func=cmd_ledger_verify)
    lr_ = lg_sub.add_parser("rebuild-summaries", help="按账本重建看板用的汇总（ledger verify 报 summary_mismatch 时用）")
    lr_.set_defaults(func=cmd_ledger_rebuild)
    le = lg_sub.add_parser("expire", help="按县里的有效期政策记入积分到期清零（可重复执行，不会重复清零）")
    le.add_argument("--as-of", help="清零截至日期（不含当天），格式 2028-01-01；默认今天")
    le.add_argument("--village", type=int, action="append", help="只处理这个村（村 id，可重复）")
    le.set_defaults(func=cmd_ledger_expire)
    li = sub.add_parser("lists", help="红黑榜")
    li_sub = li.add_subparsers(dest="lists_command", required=True)
    lx = li_sub.add_parser("expire", help="把公示期已过的红黑榜记录标为已期满（可重复执行；每天运行）")
    lx.set_defaults(func=cmd_lists_expire)
    lr = li_sub.add_parser("erase", help="超过保存期限的红黑榜记录删除个人信息（统计数字保留；每月运行）")
    lr.add_argument("--years", type=int, help="保存年限；默认 ZF_LIST_RETENTION_YEARS（5 年）")
    lr.add_argument("--dry-run", action="store_true", help="只列出将删除的数量，不做改动")
    lr.set_defaults(func=cmd_lists_erase)
    st = sub.add_parser("store", help="振风超市")
    st_sub = st.add_subparsers(dest="store_command", required=True)
    sv = st_sub.add_parser("verify", help="校验超市账目：库存=出入库，资金=采购，每笔兑换都有积分交易和出库记录")
    sv.set_defaults(func=cmd_store_verify)
    ru = sub.add_parser("rules", help="积分细则")
    ru_sub = ru.add_subparsers(dest="rules_command", required=True)
    ri = ru_sub.add_parser("import", help="导入一版积分细则（.toml，逐项校验，有错不保存）")
    ri.add_argument("file")
    ri.set_defaults(func=cmd_rules_import)
    rx = ru_sub.add_parser("export", help="导出一版积分细则为 .toml")
    rx.add_argument("code")
    rx.add_argument("version", type=int)
    rx.add_argument("--out", help="输出文件（默认：积分细则-代码-第N版.toml）")
    rx.set_defaults(func=cmd_rules_export)
    ra = ru_sub.add_parser("assign", help="指定全县或某村从某月起使用的积分细则")
    ra.add_argument("code")
    ra.add_argument("--from", dest="from_month", type=int, required=True, help="起始月份，如 202612")
    ra.add_argument("--village", type=int, help="村 id；不给出时为全县")
    ra.set_defaults(func=cmd_rules_assign)
    b = sub.add_parser("backup", help="备份数据库")
    b.add_argument("--out", help="备份目录（默认 var/backups）")
    b.set_defaults(func=cmd_backup)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as e:  # pydantic's message names the variable
        print(f"配置有误：{e}", file=sys.stderr)
        return 2
    try:
        return int(args.func(settings, args))
    except UnsafeSettingsError as e:
        print(str(e), file=sys.stderr)
        return 2
