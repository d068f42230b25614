"""Errors of the rules engine. Each carries every problem found, as Chinese sentences that say what to fix.

The engine knows nothing of the application: these are its own exceptions. The rulesets service
(`app.rulesets.service.engine_errors`) turns them into the application's refusal (HTTP 422) in one place; the full list
is in `details["problems"]`, the message shows the first few.
"""

from __future__ import annotations

from collections.abc import Sequence

MESSAGE_PROBLEMS_SHOWN = 10
PROBLEMS_KEPT = 200  # listed in details; a file of thousands of unknown keys counts the rest in one closing line


def _summary(head: str, problems: Sequence[str], total: int) -> str:
    shown = "；".join(problems[:MESSAGE_PROBLEMS_SHOWN])
    more = f"；另有 {total - MESSAGE_PROBLEMS_SHOWN} 处问题" if total > MESSAGE_PROBLEMS_SHOWN else ""
    return f"{head}（共 {total} 处）：{shown}{more}"


class RulesError(Exception):
    """Base: a list of Chinese problem messages (never empty), a stable `code` and a `message` that sums them up."""

    code = "rules_invalid"
    head = "输入有误"

    def __init__(self, problems: Sequence[str]) -> None:
        every = tuple(problems) or ("未知问题",)
        kept = every[:PROBLEMS_KEPT]
        if len(every) > PROBLEMS_KEPT:
            kept += (f"……另有 {len(every) - PROBLEMS_KEPT} 处问题未列出：请先改正上面列出的问题",)
        self.problems: tuple[str, ...] = kept
        self.message = _summary(self.head, kept, len(every))
        super().__init__(self.message)


class RulesetInvalid(RulesError):
    """A ruleset (积分细则) that does not validate: from the form, from a TOML file or from a dict."""

    code = "ruleset_invalid"
    head = "积分细则未通过校验"


class RoundInputInvalid(RulesError):
    """Ratings, determinations or history that do not fit the ruleset (a grade outside the scale, an unknown theme or
    determination, a rating entered twice ...). Nothing is computed."""

    code = "rules_input_invalid"
    head = "评比数据有误，未计算积分"
