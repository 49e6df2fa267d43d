"""Who may do what: the seed's roles, the principal a host passes in, and the policy table
(operation -> roles) a host can override.

Sequences (:mod:`leadflow.access.sequence_operations`, ``Operations.sequences``):
``sequence.read`` (everyone: get and list definitions, to pick one to enroll into),
``sequence.write`` (admins: create, publish a new version, pause, resume, archive),
``sequence.report`` (admins and dispatchers: the A/B results), ``enrollment.write`` (everyone:
enroll, bulk enroll with a dry run, unenroll; sales only on opportunities they own, by the
gateway's ``owner()``) and ``enrollment.write_any`` (admins and dispatchers: any
opportunity). An opportunity's enrollments and its timeline with the sequence steps are read
with ``activity.read``: everything with ``activity.read_all``, else only on opportunities the
principal owns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ..documents import plain
from ..errors import InvalidInputError, PermissionDeniedError
from ..models import ID_RE

__all__ = ["DEFAULT_POLICY", "OPERATIONS", "Policy", "Principal", "Role"]


class Role(StrEnum):
    """The seed's roles."""

    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    DISPATCHER = "dispatcher"
    SALES = "sales"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user id and a role (the host authenticates; leadflow authorises)."""

    user_id: str
    role: Role

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not ID_RE.match(self.user_id):
            raise InvalidInputError(f"invalid id {str(self.user_id)[:80]!r}", field="user_id")
        object.__setattr__(self, "user_id", plain(self.user_id))
        if not isinstance(self.role, Role):
            raise InvalidInputError(f"unknown role {self.role!r}", field="role")


_ADMINS: Final = frozenset({Role.SUPER_ADMIN, Role.ADMIN})
_STAFF: Final = _ADMINS | {Role.DISPATCHER}
_EVERYONE: Final = _STAFF | {Role.SALES}

_DEFAULT_TABLE: Final[dict[str, frozenset[Role]]] = {
    # activities
    "activity.create": _EVERYONE,  # sales: only for themselves, on their opportunities
    "activity.create_for_others": _STAFF,  # assign to someone else (dispatching)
    "activity.choose_id": _STAFF,
    "activity.read": _EVERYONE,  # sales: their own only
    "activity.read_all": _STAFF,
    "activity.complete": _ADMINS | {Role.SALES},  # sales: their own only
    "activity.complete_any": _ADMINS,
    # reschedule, snooze, edit: sales their own only; update_any: anyone's (dispatching)
    "activity.update": _EVERYONE,
    "activity.update_any": _STAFF,
    # hand an activity to someone (and, with update_any, another's): not sales by default
    "activity.reassign": _STAFF,
    "activity.cancel": _EVERYONE,  # sales: their own only
    "activity.cancel_any": _STAFF,
    "activity.delete": _ADMINS,
    "activity.statistics": _EVERYONE,  # sales: over their own only
    "activity.statistics_all": _STAFF,
    # rules
    "rule.read": _STAFF,
    "rule.write": _ADMINS,
    "rule.test": _ADMINS,
    # scheduled actions and the audit trail
    "action.read_parked": _ADMINS,
    "action.retry": _ADMINS,
    "audit.read": _ADMINS,
    # sequences and enrollments (see the module docstring)
    "sequence.read": _EVERYONE,
    "sequence.write": _ADMINS,
    "sequence.report": _STAFF,
    "enrollment.write": _EVERYONE,  # sales: only on opportunities they own
    "enrollment.write_any": _STAFF,
    # analytics (leadflow.access.analytics_operations)
    "analytics.read": _EVERYONE,  # sales: their own rows only
    "analytics.read_all": _STAFF,
    "analytics.backfill": _ADMINS,  # record the facts of earlier history
}


@dataclass(frozen=True)
class Policy:
    """Which roles may perform each operation. Unknown operation names are refused, so a typo
    in an override cannot silently open (or close) anything.

    ``max_backdate`` bounds how far in the past a person may date a completion they record (an
    activity created already completed: a logged call): a completion dated earlier would set
    off follow-ups overdue on arrival. Default one day; a completion dated in the future (beyond
    five minutes of clock skew) is refused too."""

    table: Mapping[str, frozenset[Role]] = field(default_factory=lambda: dict(_DEFAULT_TABLE))
    max_backdate: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_backdate, timedelta)
            or self.max_backdate < timedelta(0)
            or self.max_backdate > timedelta(days=3660)
        ):
            raise InvalidInputError(
                "expected a duration between 0 and 3,660 days", field="max_backdate"
            )
        if not isinstance(self.table, Mapping):
            raise InvalidInputError("expected a mapping of operation -> roles", field="table")
        unknown = set(self.table) - set(_DEFAULT_TABLE)
        if unknown:
            raise InvalidInputError(
                f"unknown operations {sorted(map(str, unknown))}", field="table"
            )
        missing = set(_DEFAULT_TABLE) - set(self.table)
        if missing:
            raise InvalidInputError(f"operations without roles {sorted(missing)}", field="table")
        # A read-only copy of checked roles: changing the caller's dict later changes nothing.
        checked = {name: _roles(roles, name) for name, roles in self.table.items()}
        object.__setattr__(self, "table", MappingProxyType(checked))

    def with_overrides(self, **changes: Iterable[Role | str]) -> Policy:
        """A copy with some operations' roles replaced (dots written as ``__``, e.g.
        ``activity__complete=...``). :class:`InvalidInputError` for an unknown operation or
        role."""
        table = dict(self.table)
        for name, roles in changes.items():
            operation = name.replace("__", ".")
            table[operation] = _roles(roles, operation)
        return Policy(table, max_backdate=self.max_backdate)

    def allows(self, principal: Principal, operation: str) -> bool:
        """Whether ``principal``'s role may perform ``operation``. :class:`InvalidInputError` for
        an unknown operation or something that is not a :class:`Principal`."""
        if not isinstance(principal, Principal):
            raise InvalidInputError("expected a leadflow Principal", field="principal")
        roles = self.table.get(operation)
        if roles is None:
            raise InvalidInputError(f"unknown operation {str(operation)[:80]!r}", field="operation")
        return principal.role in roles

    def require(self, principal: Principal, operation: str) -> None:
        """:class:`PermissionDeniedError` unless :meth:`allows`."""
        if not self.allows(principal, operation):
            raise PermissionDeniedError(
                f"role {principal.role.value!r} may not perform {operation!r}"
            )


def _roles(roles: object, operation: str) -> frozenset[Role]:
    """``roles`` as a frozenset of :class:`Role` (role names are accepted); a single string or an
    unknown role is an :class:`InvalidInputError` naming the operation."""
    if isinstance(roles, str | bytes) or not isinstance(roles, Iterable):
        raise InvalidInputError("expected a set of roles", field=operation)
    out: set[Role] = set()
    for role in map(plain, roles):
        if isinstance(role, Role):
            out.add(role)
        elif isinstance(role, str) and role in Role._value2member_map_:
            out.add(Role(role))
        else:
            raise InvalidInputError(f"unknown role {str(role)[:80]!r}", field=operation)
    return frozenset(out)


DEFAULT_POLICY: Final = Policy()
"""The seed's matrix, with choices where it is silent (documented in docs/service.md)."""

OPERATIONS: Final = tuple(sorted(_DEFAULT_TABLE))
"""Every operation name the policy table covers."""
