"""The floor of the stores under a ``handle`` workload: what the stores alone take for it.

:func:`record_store_calls` runs the workload once through a flow and records every call the
runtime made to its stores (the outermost ones: a store method another method of the same
store calls is part of that call), with its arguments, which of them the runtime handed over
(:func:`leadflow.stores.checks.handed_over`: the store takes those unchecked, as it did) and
what the call gave back. :meth:`StoreFloor.run` makes the same calls, in the same order, on
new, empty stores of the same kind, the values built before the timed region, and checks
that every call gave back what it gave in the flow (the same actions stored or found, the
same activities stored or refused, the same actions claimed and marked done). Its CPU time is
what any runtime on these stores pays for the workload's writes and reads, however little it
does itself: ``bench_service.py`` reports it in units of the engine beside ``handle``.
"""

from __future__ import annotations

import inspect
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from leadflow.ports import Storage
from leadflow.stores.checks import handed_over, is_handed_over

__all__ = ["StoreCall", "StoreFloor", "call_counts", "record_store_calls"]

_STORES = ("activities", "scheduled", "counters", "audit", "jobs", "enrollments", "analytics")
"""The stores of a ``Storage`` a workload's calls are recorded on (not the rules: the flow
reads them once, before the timed region, and the benchmark's set never changes)."""


@dataclass(frozen=True, slots=True)
class StoreCall:
    """One recorded call: ``storage.<store>.<method>(*args, **kwargs)``; ``models`` the
    arguments (or items of list arguments) the runtime handed over; ``outcome`` what it gave
    back, in :func:`_outcome`'s form."""

    store: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    models: tuple[Any, ...]
    outcome: Any


def _handed(args: tuple[Any, ...]) -> tuple[Any, ...]:
    found: list[Any] = []
    for arg in args:
        items = arg if isinstance(arg, list | tuple) else (arg,)
        found += [item for item in items if is_handed_over(item)]
    return tuple(found)


def _outcome(result: Any) -> Any:
    """What a call gave back, comparable between two stores: ids for actions and activities,
    the type of an exception or refusal, the value itself for plain values."""
    if isinstance(result, BaseException):
        return ("raised", type(result).__name__)
    if isinstance(result, tuple):
        return tuple(_outcome(item) for item in result)
    if isinstance(result, list):
        return [_outcome(item) for item in result]
    for name in ("action_id", "activity_id"):
        value = getattr(result, name, None)
        if isinstance(value, str):
            return (type(result).__name__, value)
    if result is None or isinstance(result, str | int | float | bool):
        return result
    return type(result).__name__


@contextmanager
def record_store_calls(storage: Storage) -> Iterator[list[StoreCall]]:
    """Inside the block, every outermost call to a public method of ``storage``'s stores (see
    :data:`_STORES`) is recorded, in order, into the list it yields. The methods are wrapped
    on the stores' classes (a flow looks some up there: ``add_plain``, ``mark_done_ids``) and
    put back after the block."""
    calls: list[StoreCall] = []
    depth = [0]
    stores = {
        name: getattr(storage, name) for name in _STORES if getattr(storage, name, None) is not None
    }
    owners = {id(store): name for name, store in stores.items()}
    patched: list[tuple[type, str, Any]] = []

    def wrapped(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def recorder(self: Any, *args: Any, **kwargs: Any) -> Any:
            store = owners.get(id(self))
            if store is None or depth[0]:
                return method(self, *args, **kwargs)
            models = _handed(args)
            depth[0] += 1
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                calls.append(StoreCall(store, name, args, kwargs, models, _outcome(exc)))
                raise
            finally:
                depth[0] -= 1
            calls.append(StoreCall(store, name, args, kwargs, models, _outcome(result)))
            return result

        return recorder

    for store in stores.values():
        cls = type(store)
        for name in dir(cls):
            method = inspect.getattr_static(cls, name)
            if name.startswith("_") or not isinstance(method, types.FunctionType):
                continue  # private, or no plain method (a property, a static method...)
            if any(cls is patched_cls and name == n for patched_cls, n, _ in patched):
                continue
            patched.append((cls, name, cls.__dict__.get(name)))
            setattr(cls, name, wrapped(name, method))
    try:
        yield calls
    finally:
        for cls, name, own in reversed(patched):
            if own is None:
                delattr(cls, name)
            else:
                setattr(cls, name, own)


class StoreFloor:
    """The recorded ``calls`` made again on the new stores ``storage`` (built by the caller,
    outside any timed region): :meth:`run` makes them and returns the CPU seconds they took,
    then checks each outcome against the recorded one (AssertionError on the first that
    differs)."""

    def __init__(self, storage: Storage, calls: list[StoreCall]) -> None:
        self._calls = calls
        self._prepared: list[Callable[[], Any]] = []
        for call in calls:
            method = getattr(getattr(storage, call.store), call.method)
            self._prepared.append(_prepared(method, call))

    def run(self) -> float:
        results: list[Any] = []
        keep = results.append
        started = time.process_time()
        for call in self._prepared:
            try:
                keep(call())
            except Exception as exc:  # a refusal the flow got too (checked below)
                keep(exc)
        cpu = time.process_time() - started
        for n, (call, result) in enumerate(zip(self._calls, results, strict=True)):
            got = _outcome(result)
            assert got == call.outcome, (n, call.store, call.method, got, call.outcome)
        return cpu


def _prepared(method: Callable[..., Any], call: StoreCall) -> Callable[[], Any]:
    args, kwargs, models = call.args, call.kwargs, call.models
    if not models:
        return lambda: method(*args, **kwargs)
    return lambda: handed_over(lambda _: method(*args, **kwargs), None, *models)


def call_counts(calls: list[StoreCall]) -> str:
    """The recorded calls counted by store and method, most first."""
    counts = Counter(f"{call.store}.{call.method}" for call in calls)
    return ", ".join(f"{name} {count:,}" for name, count in counts.most_common())
