"""Errors of the rules engine. Each carries every problem found, as Chinese sentences that say what to fix.

Both are `ValidationFailed` (HTTP 422), so the web layer renders them like any other refusal; the full list is in
`details["problems"]`, the message shows the first few.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import ValidationFailed

MESSAGE_PROBLEMS_SHOWN = 10


def _summary(head: str, problems: Sequence[str]) -> str:
    shown = "；".join(problems[:MESSAGE_PROBLEMS_SHOWN])
    more = f"；另有 {len(problems) - MESSAGE_PROBLEMS_SHOWN} 处问题" if len(problems) > MESSAGE_PROBLEMS_SHOWN else ""
    return f"{head}（共 {len(problems)} 处）：{shown}{more}"


class RulesError(ValidationFailed):
    """Base: a list of Chinese problem messages (never empty)."""

    head = "输入有误"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems) or ("未知问题",)
        super().__init__(_summary(self.head, self.problems), details={"problems": list(self.problems)})


class RulesetInvalid(RulesError):
    """A ruleset (积分细则) that does not validate: from the form, from a TOML file or from a dict."""

    code = "ruleset_invalid"
    head = "积分细则未通过校验"


class RoundInputInvalid(RulesError):
    """Ratings, determinations or history that do not fit the ruleset (a grade outside the scale, an unknown theme or
    determination, a rating entered twice ...). Nothing is computed."""

    code = "rules_input_invalid"
    head = "评比数据有误，未计算积分"
