"""The seed's eight default follow-up rules, shipped as data (``data/default_rules.json``)."""

from __future__ import annotations

import json
from importlib import resources

from ..models import FollowUpRule

__all__ = ["default_rules"]


def default_rules() -> list[FollowUpRule]:
    """Fresh copies of the eight default rules (edit them freely; the file stays as shipped)."""
    text = resources.files("leadflow").joinpath("data/default_rules.json").read_text("utf-8")
    return [FollowUpRule.model_validate(item) for item in json.loads(text)]
