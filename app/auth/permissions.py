"""Permissions: what each role may do. Deny by default: a role has only the permissions listed here.

Every route declares exactly one permission through `app.auth.deps.authorize(...)`; the route-by-role test reads
these declarations and walks every route with every role.
"""

from __future__ import annotations

from enum import StrEnum

from app.auth.models import Role


class Perm(StrEnum):
    PUBLIC = "public"  # no login needed
    SIGNED_IN = "signed_in"  # any signed-in user, for his or her own account
    ORG_VIEW = "org.view"
    ORG_MANAGE = "org.manage"  # townships and villages
    GROUP_MANAGE = "org.groups.manage"  # 村民小组 / 网格 of a village
    HOUSEHOLD_VIEW = "households.view"  # the roster in the limited view: birth year, ID number's last two, phone masked
    HOUSEHOLD_FULL = "households.full"  # the full record (the roster's owners): ID numbers, birth dates, phones
    HOUSEHOLD_MANAGE = "households.manage"  # edit, household changes, roster import
    USERS_MANAGE = "users.manage"
    AUDIT_VIEW = "audit.view"
    LEDGER_VIEW = "ledger.view"  # balances, statements, village summaries
    LEDGER_SPEND = "ledger.spend"  # take points at the store counter
    LEDGER_MANAGE = "ledger.manage"  # adjustments, reversals, the expiry policy (county administrator)
    RULESET_VIEW = "rulesets.view"  # the rules by which points are given: public to everyone signed in
    RULESET_MANAGE = "rulesets.manage"  # import versions, assign them to the county or a village
    EVAL_VIEW = "evaluation.view"  # rounds and results (a household: its own results, once made public)
    EVAL_RATE = "evaluation.rate"  # enter grades, propose and vote on determinations (recusal applies)
    EVAL_MANAGE = "evaluation.manage"  # open rounds, move them on, the committee's records, objections, ad-hoc awards
    EVAL_REVIEW = "evaluation.review"  # the township's review: approve or return a round
    OBJECTION_FILE = "evaluation.object"  # a household objects to its own result during the publicity
    STORE_VIEW = "store.view"  # catalog, stock, redemptions, the finance page
    STORE_STOCK = "store.stock"  # the catalog and stock in: purchases, donations, stock-takes, transfers
    STORE_MANAGE = "store.manage"  # store settings; voiding a redemption after its day
    FUNDS_MANAGE = "store.funds"  # record money received for the supermarket
    CARD_MANAGE = "store.cards"  # issue and print cards, report lost, reissue
    REPORTS_VIEW = "reports.view"  # the dashboard of the villages in scope: how each runs, which need attention
    NOTICES_VIEW = "notices.view"  # the villages' generated notices (公示): see, print, download; a township's batch
    NOTICES_MANAGE = "notices.manage"  # generate a village's notices; its name masking; households' portal PINs


PERM_LABELS: dict[Perm, str] = {
    Perm.PUBLIC: "公开",
    Perm.SIGNED_IN: "已登录用户",
    Perm.ORG_VIEW: "查看行政区划",
    Perm.ORG_MANAGE: "管理乡镇和村",
    Perm.GROUP_MANAGE: "管理村民小组",
    Perm.HOUSEHOLD_VIEW: "查看农户花名册",
    Perm.HOUSEHOLD_FULL: "查看完整的身份证号和电话",
    Perm.HOUSEHOLD_MANAGE: "维护花名册",
    Perm.USERS_MANAGE: "管理账号和授权",
    Perm.AUDIT_VIEW: "查看审计日志",
    Perm.LEDGER_VIEW: "查看积分余额和明细",
    Perm.LEDGER_SPEND: "在超市柜台使用积分",
    Perm.LEDGER_MANAGE: "积分调整、冲正和有效期政策",
    Perm.RULESET_VIEW: "查看积分细则",
    Perm.RULESET_MANAGE: "管理积分细则",
    Perm.EVAL_VIEW: "查看月度评比",
    Perm.EVAL_RATE: "评分和表决",
    Perm.EVAL_MANAGE: "组织月度评比",
    Perm.EVAL_REVIEW: "审核月度评比",
    Perm.OBJECTION_FILE: "对本户评比结果提出异议",
    Perm.STORE_VIEW: "查看超市商品、库存、兑换和资金",
    Perm.STORE_STOCK: "维护商品和库存",
    Perm.STORE_MANAGE: "超市设置、作废往日的兑换",
    Perm.FUNDS_MANAGE: "登记超市资金",
    Perm.CARD_MANAGE: "发放、挂失和补办积分卡",
    Perm.REPORTS_VIEW: "查看各村工作看板",
    Perm.NOTICES_VIEW: "查看和打印公示",
    Perm.NOTICES_MANAGE: "生成公示、设置姓名显示方式和农户查询密码",
}

ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.COUNTY_ADMIN: frozenset(Perm) - {Perm.PUBLIC},
    Role.TOWNSHIP_REVIEWER: frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW,
                                       Perm.RULESET_VIEW, Perm.EVAL_VIEW, Perm.EVAL_REVIEW, Perm.STORE_VIEW,
                                       Perm.REPORTS_VIEW, Perm.NOTICES_VIEW}),
    Role.VILLAGE_CLERK: frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.GROUP_MANAGE, Perm.HOUSEHOLD_VIEW,
                                   Perm.HOUSEHOLD_FULL, Perm.HOUSEHOLD_MANAGE, Perm.LEDGER_VIEW, Perm.RULESET_VIEW,
                                   Perm.EVAL_VIEW, Perm.EVAL_RATE, Perm.EVAL_MANAGE, Perm.STORE_VIEW,
                                   Perm.STORE_STOCK, Perm.STORE_MANAGE, Perm.FUNDS_MANAGE, Perm.CARD_MANAGE,
                                   Perm.REPORTS_VIEW, Perm.NOTICES_VIEW, Perm.NOTICES_MANAGE}),
    Role.COMMITTEE_MEMBER: frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW,
                                      Perm.RULESET_VIEW, Perm.EVAL_VIEW, Perm.EVAL_RATE, Perm.NOTICES_VIEW}),
    Role.STORE_CLERK: frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW,
                                 Perm.LEDGER_SPEND, Perm.RULESET_VIEW, Perm.STORE_VIEW, Perm.STORE_STOCK}),
    # A household sees its own record in the limited view too (privacy.py): its account is often used on a shared
    # family phone, and nothing it does needs the members' full ID numbers or birth dates.
    Role.HOUSEHOLD: frozenset({Perm.SIGNED_IN, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW,
                               Perm.RULESET_VIEW, Perm.EVAL_VIEW, Perm.OBJECTION_FILE}),
}


# Held by a store clerk for the store itself only: not for the other stores of its village (which the clerk may see).
STORE_BOUND: frozenset[Perm] = frozenset({Perm.LEDGER_SPEND, Perm.STORE_STOCK})


def role_has(role: Role | str, perm: Perm) -> bool:
    return perm is Perm.PUBLIC or perm in ROLE_PERMISSIONS.get(Role(role), frozenset())
