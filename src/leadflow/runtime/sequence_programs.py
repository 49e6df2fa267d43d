"""The compiled sequences a flow runs: the running version of each active or paused sequence
(its latest version that is not a draft)
(reloaded when the repository's change stamp moves, read at most every ``refresh`` of wall
time, as the rule book does) and older versions on demand, for enrollments still on them; and
the event types any stored version's goals and waits react to, so that an enrollment left on
an older version (a new version published with ``in_flight="keep"``, or a draft on top of it)
still hears its own goals and waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from ..ports import SequenceRepository
from ..rules.sequencing import SequenceProgram, reacting_event_types
from ..rules.vocabulary import Vocabulary
from ..sequences import SequenceDefinition, SequenceStatus

__all__ = ["Programs", "running_version"]

_RUNNING: Final = frozenset({SequenceStatus.ACTIVE, SequenceStatus.PAUSED})


def running_version(
    repository: SequenceRepository, latest: SequenceDefinition
) -> SequenceDefinition:
    """The version of ``latest``'s sequence that runs: the latest one that is not a draft (a
    draft stored on top of a running version is an edit not yet published: the running
    version goes on entering, running, pausing and archiving). ``latest`` itself when every
    version is a draft."""
    if latest.status is not SequenceStatus.DRAFT:
        return latest
    for version in reversed(repository.versions(latest.sequence_id)):
        if version.status is not SequenceStatus.DRAFT:
            return version
    return latest


class Programs:
    """Compiled sequence versions: the current ones (reloaded when the repository's stamp
    moves, read at most every ``refresh`` of wall time) and older ones on demand."""

    def __init__(
        self,
        repository: SequenceRepository,
        vocabulary: Callable[[], Vocabulary],
        refresh: timedelta,
    ) -> None:
        self._repository = repository
        self.vocabulary = vocabulary
        self._refresh = refresh.total_seconds()
        self._check_at = float("-inf")
        self._stamp: int | None = None
        self._compiled: dict[tuple[str, int], SequenceProgram] = {}
        self.current: dict[str, SequenceProgram] = {}
        self.listening: frozenset[str] = frozenset()
        self.reacting: frozenset[str] = frozenset()
        """The event types some stored version's goals or waits react to: an event of
        another type cannot end or move any enrollment, so its opportunity's active
        enrollments need not be read."""
        self._reacting_of: dict[str, tuple[int, frozenset[str]]] = {}

    def invalidate(self) -> None:
        self._check_at = float("-inf")

    def refresh(self) -> None:
        now = time.monotonic()
        if now < self._check_at:
            return
        self._check_at = now + self._refresh
        stamp = self._repository.stamp()
        if stamp == self._stamp:
            return
        vocabulary = self.vocabulary()
        current: dict[str, SequenceProgram] = {}
        definitions = self._repository.list()
        for definition in definitions:
            running = running_version(self._repository, definition)
            if running.status in _RUNNING:
                current[running.sequence_id] = self._compile(running, vocabulary)
        self._reacting_of = {d.sequence_id: self._reacting(d) for d in definitions}
        self.current = current
        self.reacting = frozenset(t for _, types in self._reacting_of.values() for t in types)
        self.listening = self.reacting.union(*(p.event_types() for p in current.values()))
        self._stamp = stamp

    def _reacting(self, latest: SequenceDefinition) -> tuple[int, frozenset[str]]:
        """What every stored version of ``latest``'s sequence reacts to (whatever its status:
        an enrollment may still be on any of them). Versions are only ever added, as the
        latest, and a stored version's goals and steps never change: the versions are read
        again only when the latest version moved."""
        known = self._reacting_of.get(latest.sequence_id)
        if known is not None and known[0] == latest.version:
            return known
        versions = self._repository.versions(latest.sequence_id)
        types = frozenset(t for version in versions for t in reacting_event_types(version))
        return latest.version, types

    def _compile(self, definition: SequenceDefinition, vocabulary: Vocabulary) -> SequenceProgram:
        key = (definition.sequence_id, definition.version)
        program = self._compiled.get(key)
        if program is None or program.definition != definition:
            program = SequenceProgram(definition, vocabulary)
            if len(self._compiled) > 1000:
                self._compiled.clear()
            self._compiled[key] = program
        return program

    def get(self, sequence_id: str, version: int) -> SequenceProgram:
        program = self.current.get(sequence_id)
        if program is not None and program.definition.version == version:
            return program
        program = self._compiled.get((sequence_id, version))
        if program is None:
            definition = self._repository.get(sequence_id, version)
            program = self._compile(definition, self.vocabulary())
        return program
