"""The ruleset (积分细则): frozen dataclasses, plain data. Validation lives in `validate.py`, TOML in `toml_io.py`.

A ruleset is identified by (code, version) and takes effect from a month (YYYYMM). Everything is an int: points,
fen, months, percentages. Optional numbers are `None` (and simply absent from a TOML file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from app.rules.credit import CreditRule

Combine = Literal["median", "mean", "trimmed_mean"]
PenaltyPolicyName = Literal["floor_at_zero", "allow_debt"]
ListName = Literal["red", "black", "none"]
Vote = Literal["majority", "two_thirds", "unanimous"]

COMBINES: Final = ("median", "mean", "trimmed_mean")
PENALTY_POLICIES: Final = ("floor_at_zero", "allow_debt")
LISTS: Final = ("red", "black", "none")
VOTES: Final = ("majority", "two_thirds", "unanimous")

COMBINE_LABELS: Final = {"median": "中位数", "mean": "平均", "trimmed_mean": "去掉最高最低后平均"}
LIST_LABELS: Final = {"red": "红榜", "black": "黑榜", "none": "不上榜"}
VOTE_LABELS: Final = {"majority": "过半数", "two_thirds": "三分之二以上", "unanimous": "全体一致"}
PENALTY_LABELS: Final = {"floor_at_zero": "扣到零为止", "allow_debt": "允许负分"}


@dataclass(frozen=True)
class Grade:
    """One step of a theme's scale. `code` is what is entered (优, A, 5 ...), `label` what is shown; a higher `rank`
    is a better grade. Points may be zero or negative."""

    code: str
    label: str
    points: int
    rank: int


@dataclass(frozen=True)
class Theme:
    """One evaluation theme (评比项目), e.g. ENV 环保卫生. `monthly_cap` bounds the positive points a household
    gets from this theme in one month: its grade plus any determination linked to the theme."""

    code: str
    name: str
    grades: tuple[Grade, ...]
    monthly_cap: int
    description: str = ""

    def grade(self, code: str) -> Grade | None:
        """The grade with this code, or None."""
        return next((g for g in self.grades if g.code == code), None)

    def scale(self) -> tuple[Grade, ...]:
        """The grades from worst to best (by rank)."""
        return tuple(sorted(self.grades, key=lambda g: g.rank))


@dataclass(frozen=True)
class Determination:
    """A named judgement (认定) the committee votes on: 不诚信户, 文明家庭 ... `points` is signed. `list` says where
    the posting goes (or "none": points only). `theme`, when set, makes positive points count toward that theme's
    monthly cap. `names_member`: the posting names a household member (不孝儿女, 好婆婆好媳妇)."""

    code: str
    name: str
    list: ListName
    points: int
    months_shown: int
    evidence_required: bool = False
    vote: Vote = "majority"
    names_member: bool = False
    theme: str | None = None
    description: str = ""


@dataclass(frozen=True)
class RedPolicy:
    """Who goes on the red list (红榜) besides commendations.

    threshold: monthly total >= threshold. top_percent: among the top ceil(n * N / 100) places of the village's rated
    households, ties at the boundary all included, total above zero. When both are set a household must meet both.
    commendations_count: red determinations (文明家庭 ...) post to the red list.
    exclude_black: a household with a black posting this month gets no red posting from this policy.
    """

    threshold: int | None = None
    top_percent: int | None = None
    months_shown: int = 1
    commendations_count: bool = True
    exclude_black: bool = True

    def has_criterion(self) -> bool:
        """Does the policy post anybody by monthly total?"""
        return self.threshold is not None or self.top_percent is not None


@dataclass(frozen=True)
class WorstGradeRule:
    """A theme graded at its lowest rank `months` months running posts the black determination `determination`
    (e.g. ENV 差 for 3 months -> UNHYGIENIC 卫生不整洁户). The posting adds no points: the grades already counted."""

    theme: str
    months: int
    determination: str


@dataclass(frozen=True)
class BlackPolicy:
    """Who goes on the black list (黑榜): black determinations (when `determinations_count`) and the worst-grade
    runs of `worst_grade`."""

    determinations_count: bool = True
    worst_grade: tuple[WorstGradeRule, ...] = ()


@dataclass(frozen=True)
class Ruleset:
    """A versioned ruleset. `quorum` is the minimum number of eligible committee members behind a rating (panel:
    raters; consensus: members present). `point_value_fen`: what one point is worth, in fen. `credit`: how a
    household's year is graded in its credit file (信用等级, see `credit.py`); a stored file without it grades by the
    county's former fixed rule."""

    code: str
    name: str
    version: int
    effective_from: int
    point_value_fen: int
    combine: Combine
    quorum: int
    penalty_policy: PenaltyPolicyName
    themes: tuple[Theme, ...]
    determinations: tuple[Determination, ...] = ()
    red_policy: RedPolicy = field(default_factory=RedPolicy)
    black_policy: BlackPolicy = field(default_factory=BlackPolicy)
    coverage_target_pct: int = 60
    credit: CreditRule = field(default_factory=CreditRule)

    def theme(self, code: str) -> Theme | None:
        """The theme with this code, or None."""
        return next((t for t in self.themes if t.code == code), None)

    def determination(self, code: str) -> Determination | None:
        """The determination with this code, or None."""
        return next((d for d in self.determinations if d.code == code), None)


def _grades_4(best: int, good: int, fair: int, poor: int) -> tuple[Grade, ...]:
    return (Grade("优", "优", best, 4), Grade("良", "良", good, 3), Grade("中", "中", fair, 2), Grade("差", "差", poor, 1))


def default_ruleset() -> Ruleset:
    """The county default (县级默认积分细则): six themes graded 优/良/中/差 = 10/6/2/0 points (遵纪守法 差 = -5), the usual
    determinations, a red list for a monthly total of at least 50 within the village's top 10 %, and a black list for
    negative determinations and for 环保卫生 graded 差 three months running; credit grades AAA/AA/A as in `credit.py`."""
    themes = (
        Theme("DILIGENT", "勤劳致富", _grades_4(10, 6, 2, 0), 10, "勤劳务工、发展产业、自主创业，家庭收入稳定增长"),
        Theme("FILIAL", "孝老爱亲", _grades_4(10, 6, 2, 0), 20, "赡养老人、关爱子女、邻里和睦，家庭和谐"),
        Theme("CUSTOMS", "移风易俗", _grades_4(10, 6, 2, 0), 10, "红事新办、白事简办，不大操大办、不攀比、不收高额彩礼"),
        Theme("ENV", "环保卫生", _grades_4(10, 6, 2, 0), 10, "房前屋后整洁，垃圾分类投放，不乱堆乱放、不乱倒污水"),
        Theme("LAW", "遵纪守法", _grades_4(10, 6, 2, -5), 10, "遵守法律法规和村规民约，不参与赌博、邪教，无违法违纪"),
        Theme("PUBLIC", "热心公益", _grades_4(10, 6, 2, 0), 10, "参加义务劳动、志愿服务，支持村集体事业"),
    )
    determinations = (
        Determination("DISHONEST", "不诚信户", "black", -10, 3, evidence_required=True, vote="two_thirds",
                      description="欠债不还、恶意拖欠、弄虚作假等失信行为"),
        Determination("UNFILIAL", "不孝儿女", "black", -10, 3, evidence_required=True, vote="two_thirds",
                      names_member=True, theme="FILIAL", description="不赡养、虐待或遗弃老人"),
        Determination("UNHYGIENIC", "卫生不整洁户", "black", -5, 1, evidence_required=True, theme="ENV",
                      description="房前屋后脏乱差，经提醒仍不整改"),
        Determination("CIVILISED_FAMILY", "文明家庭", "red", 20, 3, description="家风良好、邻里和睦、热心公益的模范家庭"),
        Determination("GOOD_INLAW", "好婆婆好媳妇", "red", 10, 3, names_member=True, theme="FILIAL",
                      description="婆媳和睦、尊老爱幼的典型"),
        Determination("BRAVE", "见义勇为", "red", 30, 12, evidence_required=True, names_member=True,
                      description="危急时刻挺身而出，保护他人生命财产安全"),
    )
    return Ruleset(
        code="COUNTY-DEFAULT",
        name="县级默认积分细则",
        version=1,
        effective_from=202501,
        point_value_fen=100,
        combine="median",
        quorum=3,
        penalty_policy="floor_at_zero",
        themes=themes,
        determinations=determinations,
        red_policy=RedPolicy(threshold=50, top_percent=10, months_shown=1),
        black_policy=BlackPolicy(worst_grade=(WorstGradeRule("ENV", 3, "UNHYGIENIC"),)),
        coverage_target_pct=60,
        credit=CreditRule(),
    )
