"""Scopes as plain data, so that services can filter by what a user may see without knowing about HTTP or auth.

A `Scope` says where an object lives in the tree; a `ScopeFilter` says which part of the tree a user may reach
for one permission. County-level objects (users, the county itself) have an empty Scope: only a county-wide grant
covers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    township_id: int | None = None
    village_id: int | None = None
    store_id: int | None = None
    household_id: int | None = None


@dataclass(frozen=True)
class ScopeFilter:
    everything: bool = False
    township_ids: frozenset[int] = field(default_factory=frozenset)
    village_ids: frozenset[int] = field(default_factory=frozenset)
    store_ids: frozenset[int] = field(default_factory=frozenset)
    household_ids: frozenset[int] = field(default_factory=frozenset)

    def covers(self, scope: Scope) -> bool:
        if self.everything:
            return True
        if scope.household_id is not None and scope.household_id in self.household_ids:
            return True
        if scope.store_id is not None and scope.store_id in self.store_ids:
            return True
        if scope.village_id is not None and scope.village_id in self.village_ids:
            return True
        return scope.township_id is not None and scope.township_id in self.township_ids


EVERYTHING = ScopeFilter(everything=True)
