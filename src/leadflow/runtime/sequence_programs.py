"""The compiled sequences a flow runs: the current version of each active or paused sequence
(reloaded when the repository's change stamp moves, read at most every ``refresh`` of wall
time, as the rule book does) and older versions on demand, for enrollments still on them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from ..ports import SequenceRepository
from ..rules.sequencing import SequenceProgram
from ..rules.vocabulary import Vocabulary
from ..sequences import SequenceDefinition, SequenceStatus

__all__ = ["Programs"]

_RUNNING: Final = frozenset({SequenceStatus.ACTIVE, SequenceStatus.PAUSED})


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
        for definition in self._repository.list():
            if definition.status in _RUNNING:
                current[definition.sequence_id] = self._compile(definition, vocabulary)
        self.current = current
        self.listening = frozenset(t for p in current.values() for t in p.event_types())
        self._stamp = stamp

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
