"""Realistic, deterministic demo families: Chinese names with national surname frequencies (and a few dominant
clans per village, as in real villages), valid ID numbers, families of 1 to 7 members."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from app.core.cn_id import make_id_number

# Surname shares (per cent of the population), the commonest first.
SURNAMES: list[tuple[str, float]] = [
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.2), ("赵", 2.1),
    ("吴", 2.0), ("周", 1.9), ("徐", 1.7), ("孙", 1.5), ("马", 1.5), ("朱", 1.3), ("胡", 1.3), ("郭", 1.2),
    ("何", 1.2), ("高", 1.1), ("林", 1.1), ("罗", 0.9), ("郑", 0.9), ("梁", 0.8), ("谢", 0.8), ("宋", 0.7),
    ("唐", 0.7), ("许", 0.7), ("韩", 0.6), ("冯", 0.6), ("邓", 0.6), ("曹", 0.6), ("彭", 0.6), ("曾", 0.5),
    ("肖", 0.5), ("田", 0.5), ("董", 0.5), ("袁", 0.5), ("潘", 0.4), ("于", 0.4), ("蒋", 0.4), ("蔡", 0.4),
    ("余", 0.4), ("杜", 0.4), ("叶", 0.4), ("程", 0.4), ("苏", 0.4), ("魏", 0.4), ("吕", 0.4), ("丁", 0.4),
    ("任", 0.3), ("沈", 0.3), ("姚", 0.3), ("卢", 0.3), ("姜", 0.3), ("崔", 0.3), ("钟", 0.3), ("谭", 0.3),
    ("陆", 0.3), ("汪", 0.3), ("范", 0.3), ("金", 0.3), ("石", 0.3), ("廖", 0.3), ("贾", 0.3), ("夏", 0.3),
    ("方", 0.3), ("单", 0.1), ("解", 0.1), ("查", 0.1), ("仇", 0.05), ("欧阳", 0.05),
]
MALE_CHARS = "建国志强伟明军华平勇德文海林永春福庆荣忠成长山明光辉斌刚金宝兴旺发财有贵家豪宇轩浩然子涵俊杰晨阳"
FEMALE_CHARS = "秀英桂兰玉梅凤霞兰芳丽红春燕翠花金莲淑珍美华云彩雪梅婷娜静敏晓雨欣怡梓涵思琪佳慧"
AREAS = ["341021", "341022", "341023", "341024", "341002", "341003", "341004"]


@dataclass
class Person:
    name: str
    relation: str
    gender: str
    birth: date
    id_number: str
    phone: str | None
    party_member: bool
    living_away: bool


def _given(rng: random.Random, male: bool) -> str:
    chars = MALE_CHARS if male else FEMALE_CHARS
    return "".join(rng.choice(chars) for _ in range(rng.choice((1, 2, 2, 2))))


def _birth(rng: random.Random, year: int) -> date:
    return date(year, 1, 1) + timedelta(days=rng.randrange(365))


class FamilyMaker:
    def __init__(self, seed: int, village_index: int) -> None:
        self.rng = random.Random(seed * 1000 + village_index)
        # Each village has three or four dominant clans, as Chinese villages often do.
        names, weights = zip(*SURNAMES, strict=True)
        clans = self.rng.sample(names[:30], 4)
        boosted = [w * (12 if n in clans else 1) for n, w in zip(names, weights, strict=True)]
        self.names, self.weights = list(names), boosted
        self.area = AREAS[village_index % len(AREAS)]
        self.seq = 0
        self.used: set[str] = set()

    def surname(self) -> str:
        return self.rng.choices(self.names, self.weights)[0]

    def _person(self, surname: str, relation: str, male: bool, year: int, adult: bool = True) -> Person:
        self.seq += 1
        birth = _birth(self.rng, min(year, date.today().year - 1))
        phone = f"1{self.rng.choice('3578')}{self.rng.randrange(10**9):09d}" if adult and self.rng.random() < 0.7 else None
        id_number = make_id_number(self.area, birth, self.seq, male)
        while id_number in self.used:  # same birth date and sequence: take the next sequence number
            self.seq += 2
            id_number = make_id_number(self.area, birth, self.seq, male)
        self.used.add(id_number)
        return Person(name=surname + _given(self.rng, male), relation=relation, gender="男" if male else "女",
                      birth=birth, id_number=id_number, phone=phone,
                      party_member=adult and self.rng.random() < 0.06,
                      living_away=adult and 18 <= date.today().year - birth.year <= 50 and self.rng.random() < 0.3)

    def family(self) -> list[Person]:
        rng = self.rng
        surname = self.surname()
        size = rng.choices([1, 2, 3, 4, 5, 6, 7], [6, 18, 22, 24, 16, 9, 5])[0]
        head_year = rng.randrange(1940, 1995)
        head_male = rng.random() < 0.85 or (size == 1 and rng.random() < 0.5)
        people = [self._person(surname, "户主", head_male, head_year)]
        if size >= 2:
            people.append(self._person(self.surname(), "配偶", not head_male, head_year + rng.randrange(-3, 4)))
        child_year = head_year + rng.randrange(22, 32)
        while len(people) < size:
            kind = rng.random()
            if kind < 0.6 and child_year < date.today().year - 1:
                male = rng.random() < 0.52
                adult = date.today().year - child_year >= 18
                people.append(self._person(surname if male or rng.random() < 0.9 else self.surname(),
                                           "儿子" if male else "女儿", male, child_year, adult))
                child_year += rng.randrange(2, 5)
            elif kind < 0.75 and head_year > 1960:
                father = rng.random() < 0.4
                people.append(self._person(surname if father else self.surname(), "父亲" if father else "母亲",
                                           father, head_year - rng.randrange(24, 32)))
            elif kind < 0.9 and child_year - head_year > 20:
                people.append(self._person(self.surname(), "儿媳", False, child_year - rng.randrange(0, 3)))
            else:
                year = max(child_year + 24, head_year + 45)
                male = rng.random() < 0.5
                people.append(self._person(surname, "孙子" if male else "孙女", male, year,
                                           adult=date.today().year - year >= 18))
        return people
