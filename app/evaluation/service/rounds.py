"""Monthly rounds (评比轮次): one per village and month, a state machine whose every transition is recorded and
audited, the ratings (panel or consensus) with recusal enforced, and finalisation that posts the explained points
through the ledger's bulk posting and creates the red/black list postings.

    draft ──submit──▶ submitted ──approve──▶ approved ──publicise──▶ publicised ──finalise──▶ finalised
      ▲                   │
      └──── returned ◀─return (with comments)

While a round is in draft (or returned) its roster is the village's households of that month, read live; it is frozen
at submission. The ruleset version is fixed when the round opens and re-read at submission (a version published
meanwhile for that month applies); from then on the round keeps it.

This module is the entry point: `from app.evaluation.service import rounds`, then `rounds.finalise(...)`. The code
lives in its sibling modules, by what it does:

    reading      the states, the transitions' table, reading rounds (one, a village's, across villages)
    roster       the households of a round's month
    ratings      saving and reading grades
    compute      the engine's input, the results as they stand, progress, simulation
    transitions  opening a round, submit / approve / return / publicise / finalise
    results      the stored results and what the pages show

The month arithmetic is app.core.month's and the list postings' upkeep app.lists.service's; their names are
re-exported here for the callers (tests, scripts) that reach them through `rounds`. A test that patches a function
patches it in the module that defines it: the siblings call one another by their own names.

Services flush, never commit.
"""

from __future__ import annotations

from app.core.month import add_months, current_month, month_start, next_month, prev_month, today_local
from app.evaluation.service.compute import Corrections, Progress, build_input, compute, corrections, progress, simulate
from app.evaluation.service.ratings import Cell, SaveResult, fill_default, grid, missing_cells, panel_grades, save_ratings
from app.evaluation.service.reading import (
    CONSENSUS,
    EDITABLE,
    MAX_OBJECTION_DAYS,
    MODE_LABELS,
    STATUS_LABELS,
    TRANSITIONS,
    MonthState,
    RoundError,
    _editable,
    eligibility_of,
    events,
    first_months,
    get_round,
    latest_by_village,
    month_states,
    round_of_month,
    rounds_of_village,
    ruleset_of,
    scope_of_round,
)
from app.evaluation.service.results import (
    HouseholdView,
    StoredTotals,
    _line_dict,
    _posting_dict,
    grades_of,
    household_rounds,
    household_view,
    identical_months,
    previous_totals,
    stored_results,
    stored_totals,
    views,
)
from app.evaluation.service.roster import RosterEntry, roster
from app.evaluation.service.transitions import (
    Finalised,
    approve,
    finalise,
    open_round,
    points_memo,
    publicise,
    return_round,
    set_present,
    submit,
)
from app.lists.service import postings_of_round, rebuild_list_counts, refresh_list_counts

__all__ = [  # every name callers reach through `rounds`
    "CONSENSUS", "EDITABLE", "MAX_OBJECTION_DAYS", "MODE_LABELS", "STATUS_LABELS", "TRANSITIONS", "Cell",
    "Corrections", "Finalised", "HouseholdView", "MonthState", "Progress", "RosterEntry", "RoundError", "SaveResult",
    "StoredTotals", "_editable", "_line_dict", "_posting_dict", "add_months", "approve", "build_input", "compute",
    "corrections", "current_month", "eligibility_of", "events", "fill_default", "finalise", "first_months",
    "get_round", "grades_of", "grid", "household_rounds", "household_view", "identical_months", "latest_by_village",
    "missing_cells", "month_start", "month_states", "next_month", "open_round", "panel_grades", "points_memo",
    "postings_of_round", "prev_month", "previous_totals", "progress", "publicise", "rebuild_list_counts",
    "refresh_list_counts", "return_round", "roster", "round_of_month", "rounds_of_village", "ruleset_of",
    "save_ratings", "scope_of_round", "set_present", "simulate", "stored_results", "stored_totals", "submit",
    "today_local", "views"
]
