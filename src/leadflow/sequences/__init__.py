"""Sequences as data: definitions (:class:`SequenceDefinition` and its steps) and the
enrollment records the stores keep. The pure interpreter that walks them is
:mod:`leadflow.rules.sequencing`; the runtime that stores and runs their steps is
:mod:`leadflow.runtime.sequencer`."""

from __future__ import annotations

from .definition import (
    ActionStep,
    BranchCase,
    BranchStep,
    Entry,
    ExitStep,
    Goal,
    GotoStep,
    Reenrollment,
    SendWindow,
    SequenceDefinition,
    SequenceStatus,
    SplitStep,
    SplitVariant,
    Step,
    TimeOfDay,
    WaitForEventStep,
    WaitStep,
)
from .enrollment import ENDED_STATES, Enrollment, EnrollmentHead, EnrollmentState, StepRecord

__all__ = [
    "ENDED_STATES",
    "ActionStep",
    "BranchCase",
    "BranchStep",
    "Enrollment",
    "EnrollmentHead",
    "EnrollmentState",
    "Entry",
    "ExitStep",
    "Goal",
    "GotoStep",
    "Reenrollment",
    "SendWindow",
    "SequenceDefinition",
    "SequenceStatus",
    "SplitStep",
    "SplitVariant",
    "Step",
    "StepRecord",
    "TimeOfDay",
    "WaitForEventStep",
    "WaitStep",
]
