"""The activity filter's query parameters (the list and statistics routes), derived from
:class:`~leadflow.ActivityFilter`: the same criteria, types and limits, camelCase on the wire, a
list where the filter holds a tuple (a repeated parameter)."""

from __future__ import annotations

from copy import copy
from datetime import datetime
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import Field, create_model
from pydantic.fields import FieldInfo

from ...models import ActivityState
from ...queries import ActivityFilter
from .bodies import _Wire

__all__ = ["FILTER_PARAMETERS", "ActivityListQuery", "SortName", "StatisticsQuery"]


def _wire_field(name: str, info: FieldInfo) -> tuple[Any, FieldInfo]:
    """One :class:`~leadflow.ActivityFilter` field as a query parameter: the same type and
    constraints, a list where the filter holds a tuple (a repeated parameter), optional."""
    annotation: Any = info.annotation
    if get_origin(annotation) in (UnionType, Union):
        annotation = Union[tuple(_listed(arg) for arg in get_args(annotation))]  # noqa: UP007
    wire = copy(info)
    wire.annotation = annotation
    wire.default = None
    wire.description = _WIRE_NOTES.get(name, info.description)
    return annotation, wire


def _listed(annotation: Any) -> Any:
    if get_origin(annotation) is tuple:
        item, _more = get_args(annotation)
        return list[item]  # type: ignore[valid-type]
    return annotation


_WIRE_NOTES = {"as_of": "the time pending / overdue are judged at (default: now)"}
#: The filter's query parameters, derived from ActivityFilter: a criterion added there is a
#: parameter here (tests/test_contrib_fastapi_schema.py checks they stay the same).
FILTER_PARAMETERS: dict[str, Any] = {
    name: _wire_field(name, info) for name, info in ActivityFilter.model_fields.items()
}


class _FilterBase(_Wire):
    """What the filter queries do with their parameters (the parameters themselves are
    :data:`FILTER_PARAMETERS`, added by :func:`_filter_query`)."""

    def filter(self, now: datetime) -> dict[str, Any]:
        """The filter part as an ``ActivityFilter`` mapping (a state is judged ``now`` unless
        ``asOf`` is given)."""
        raw = self.model_dump(by_alias=True, exclude_unset=True, exclude=_PAGING)
        state = getattr(self, "state", None)
        if state in (ActivityState.PENDING, ActivityState.OVERDUE) and raw.get("asOf") is None:
            raw["asOf"] = now
        return raw


_PAGING = {"sort", "descending", "limit", "cursor"}


SortName = Literal[
    "createdAt",
    "updatedAt",
    "dueDate",
    "scheduledDate",
    "completedDate",
    "created_at",
    "updated_at",
    "due_date",
    "scheduled_date",
    "completed_date",
]
"""What a list sorts by (either spelling); ties are broken by the activity id."""


class _ListBase(_FilterBase):
    sort: SortName | None = None
    descending: bool = False
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=2000)

    def sort_order(self) -> dict[str, Any] | None:
        if self.sort is None and not self.descending:
            return None
        return {"field": self.sort or "created_at", "descending": self.descending}


_Base = TypeVar("_Base", bound=_FilterBase)


def _filter_query(name: str, base: type[_Base], doc: str) -> type[_Base]:
    model = create_model(name, __base__=base, __doc__=doc, **FILTER_PARAMETERS)
    model.__module__ = __name__
    return model


if TYPE_CHECKING:
    StatisticsQuery = _FilterBase
    ActivityListQuery = _ListBase
else:
    StatisticsQuery = _filter_query(
        "StatisticsQuery",
        _FilterBase,
        "The statistics' filter (query parameters; all given criteria must hold).",
    )
    ActivityListQuery = _filter_query(
        "ActivityListQuery",
        _ListBase,
        "The list's filter, sort order and page (query parameters). Ranges are half-open "
        "(``from <= x < to``); list-valued criteria repeat the parameter.",
    )
