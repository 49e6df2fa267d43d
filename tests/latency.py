"""Store proxies for concurrency and failure tests.

:class:`Slow` sleeps a few milliseconds before delegating each method call, which widens the
window between a check and the act that follows it: a check-then-act race that a real network
round trip would expose shows up in a test in almost every trial. :class:`Tripwire` runs a
hook around chosen methods (raise after the write, crash the process...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any


class Slow:
    """Delegates to ``inner``, sleeping ``delay`` seconds before each call of a method (only
    the ``methods`` named, when given). Attributes that are not callable pass through."""

    def __init__(
        self, inner: Any, delay: float = 0.002, *, methods: Collection[str] | None = None
    ) -> None:
        self._inner = inner
        self._delay = delay
        self._methods = None if methods is None else frozenset(methods)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or (self._methods is not None and name not in self._methods):
            return target
        delay = self._delay

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(delay)
            return target(*args, **kwargs)

        return slow


Hook = Callable[[str, tuple[Any, ...], dict[str, Any]], None]


class Tripwire:
    """Delegates to ``inner``; ``before[name]`` runs before a call of method ``name`` and
    ``after[name]`` after it returned (either may raise, e.g. to simulate a reply lost after
    the write, or a process dying). ``calls`` counts the calls per method."""

    def __init__(
        self,
        inner: Any,
        *,
        before: Mapping[str, Hook] | None = None,
        after: Mapping[str, Hook] | None = None,
    ) -> None:
        self._inner = inner
        self.before: dict[str, Hook] = dict(before or {})
        self.after: dict[str, Hook] = dict(after or {})
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def wired(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            hook = self.before.get(name)
            if hook is not None:
                hook(name, args, kwargs)
            result = target(*args, **kwargs)
            hook = self.after.get(name)
            if hook is not None:
                hook(name, args, kwargs)
            return result

        return wired


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in leadflow catches it."""


class Dying:
    """Delegates to ``inner`` until :meth:`die` is called; from then on every method call
    raises :class:`Crash`: the process is gone, so nothing after that point reaches the store
    (not even the clean-up a ``finally`` block would attempt)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dead = False

    def die(self) -> None:
        self.dead = True

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Crash(f"the process died before {name}")
            return target(*args, **kwargs)

        return guarded
