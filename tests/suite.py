"""Suite-wide settings. How big the long tests run: read from the environment, small by default
(the README's test command on a developer's machine), at full scale in CI (`.ci/run` sets them).

- The Hypothesis profile, ``LEADFLOW_TEST_HYPOTHESIS_PROFILE``: ``dev`` by default, ``ci`` in
  CI (loaded by tests/conftest.py; ``--hypothesis-profile`` on pytest's command line wins).
  ``ci`` runs Hypothesis' 100 examples per property and every count a test names in full;
  ``dev`` runs a quarter of each (:func:`examples`). A failure found either way is kept in
  Hypothesis' example database (``.hypothesis/``) and replayed first on the next run.
- The real-process scales (:func:`count`): each test names its variable and its two sizes in
  its module's docstring; `.ci/run` exports the full ones.

Also the name under which the real-process tests keep their figures (:data:`FIGURES`), which
tests/conftest.py prints at the end of the run. Standard library and Hypothesis only:
tests/conftest.py imports it.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_ENV = "LEADFLOW_TEST_HYPOTHESIS_PROFILE"
#: the user property (``item.user_properties``) a real-process test's figures are kept in
FIGURES = "leadflow-figures"
#: Hypothesis' own default number of examples, run in full by the ``ci`` profile
FULL_EXAMPLES = 100
#: the share of each example count the ``dev`` profile runs
DEV_SHARE = 4

settings.register_profile("ci", max_examples=FULL_EXAMPLES)
settings.register_profile("dev", max_examples=FULL_EXAMPLES // DEV_SHARE)


def load_profile() -> str:
    """Load the profile that ``LEADFLOW_TEST_HYPOTHESIS_PROFILE`` names (default ``dev``)."""
    name = os.environ.get(PROFILE_ENV, "dev")
    settings.load_profile(name)
    return name


def examples(full: int) -> int:
    """A property's example count: ``full`` under the ``ci`` profile, in proportion to the
    loaded profile's ``max_examples`` otherwise (a quarter under ``dev``, at least 10).
    Call it where the ``@settings`` is built (import time, once the profile is loaded)."""
    share = settings.default.max_examples / FULL_EXAMPLES
    return full if share >= 1 else max(10, round(full * share))


def count(env: str, default: int) -> int:
    """An integer scale: ``env`` when set (CI sets the full one), else ``default``."""
    return int(os.environ.get(env, default))
