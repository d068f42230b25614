"""The rules engine (积分细则): pure functions from ratings, determinations and a ruleset to points lines and list
postings. It imports nothing from the database, the web or other domains.

- `schema`: the ruleset dataclasses and `default_ruleset()`;
- `credit`: the credit grade rule (信用等级) of a ruleset: `CreditRule.grade(CreditRecord)` and the rule in words;
- `validate`: `validate(r) -> list[str]` (Chinese problems), `check(r)` raises `RulesetInvalid`;
- `convert` / `toml_io`: dict and TOML forms (`to_dict`, `from_dict`, `dumps`, `loads`);
- `model`: the engine's input and output dataclasses;
- `engine`: `evaluate(round, ruleset)`, `simulate(round, a, b)`, `check_input(round, ruleset)`.
"""

from app.rules.convert import from_dict, to_dict
from app.rules.credit import CreditGrade, CreditRecord, CreditRule
from app.rules.engine import check_input, evaluate, simulate
from app.rules.errors import RoundInputInvalid, RulesError, RulesetInvalid
from app.rules.model import (
    HouseholdChange,
    HouseholdResult,
    ListPosting,
    PassedDetermination,
    PointsLine,
    Problem,
    Rating,
    RoundInput,
    RoundResult,
    RoundTotals,
    Simulation,
    Skipped,
    TotalsChange,
    WorstRun,
)
from app.rules.schema import (
    BlackPolicy,
    Determination,
    Grade,
    RedPolicy,
    Ruleset,
    Theme,
    WorstGradeRule,
    default_ruleset,
)
from app.rules.toml_io import dumps, loads
from app.rules.validate import check, validate

__all__ = [
    "BlackPolicy", "CreditGrade", "CreditRecord", "CreditRule", "Determination", "Grade", "HouseholdChange",
    "HouseholdResult", "ListPosting", "PassedDetermination", "PointsLine", "Problem", "Rating", "RedPolicy",
    "RoundInput", "RoundInputInvalid", "RoundResult", "RoundTotals", "RulesError", "Ruleset", "RulesetInvalid",
    "Simulation", "Skipped", "Theme", "TotalsChange", "WorstGradeRule", "WorstRun", "check", "check_input",
    "default_ruleset", "dumps", "evaluate", "from_dict", "loads", "simulate", "to_dict", "validate",
]
