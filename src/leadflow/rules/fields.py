"""Field paths: how a condition's dotted ``field`` reads a payload, and :data:`MISSING`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pydantic.alias_generators import to_camel, to_snake

__all__ = ["MISSING", "field_getter", "single_key"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()
"""What a field path resolves to when the event has no such field."""


# --------------------------------------------------------------------------- field paths


def _spellings(segment: str) -> tuple[Any, ...]:
    if segment.isdigit():
        return (int(segment),)
    alternatives = [segment]
    for variant in (to_snake(segment), to_camel(segment)):
        if variant not in alternatives and variant:
            alternatives.append(variant)
    return tuple(alternatives)


def field_getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """Compile a dotted path into a getter returning the value or :data:`MISSING`.

    Each segment matches the name as written first, then its snake_case / camelCase twin, so
    ``metadata.quoteValue`` also finds ``metadata.quote_value``. Numeric segments index lists.
    """
    steps = [_spellings(s) for s in path.split(".")]
    if len(steps) == 1 and not isinstance(steps[0][0], int):
        names = steps[0]
        if len(names) == 1:
            key = names[0]

            def get_one(payload: Mapping[str, Any]) -> Any:
                return payload.get(key, MISSING)

            return get_one
        first, second = names[0], names[1]

        def get_twin(payload: Mapping[str, Any]) -> Any:
            value = payload.get(first, MISSING)
            if value is MISSING:
                return payload.get(second, MISSING)
            return value

        return get_twin

    def get_path(payload: Mapping[str, Any]) -> Any:
        current: Any = payload
        for names in steps:
            if type(current) is dict or isinstance(current, Mapping):
                for name in names:
                    if name in current:
                        current = current[name]
                        break
                else:
                    return MISSING
            elif isinstance(current, list) and isinstance(names[0], int):
                index = names[0]
                if index >= len(current):
                    return MISSING
                current = current[index]
            else:
                return MISSING
        return current

    return get_path


def single_key(path: str) -> tuple[str, str] | None:
    """For a one-segment path, the two names :func:`field_getter` tries (the same twice when
    the name has no twin); None for dotted paths and list indexes."""
    if "." in path:
        return None
    names = _spellings(path)
    if isinstance(names[0], int):
        return None
    return (names[0], names[1] if len(names) > 1 else names[0])
