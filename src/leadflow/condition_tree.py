"""Bounds on a rule's or a sequence's condition tree, checked on the raw input before pydantic
builds it: ``all`` / ``any`` / ``not`` groups nested at most ``condition_depth`` levels, at most
``conditions_per_rule`` nodes (leaves and groups). Iterative, whatever the input's depth.
"""

from __future__ import annotations

from typing import Any

from . import limits as _limits
from .errors import InvalidInputError

__all__ = ["check_condition_tree"]


def _children(node: Any) -> list[Any] | None:
    """The child nodes of a condition group (raw dict or model), ``None`` for a leaf."""
    if type(node) is dict:
        if "kind" in node:
            bodies = [node.get("conditions")]
        elif "all" in node or "any" in node or "not" in node:
            bodies = [node[key] for key in ("all", "any", "not") if key in node]
        else:
            return None
    elif isinstance(node, dict):
        return _children(dict(node))
    elif getattr(node, "kind", None) in ("all", "any", "not"):  # a ConditionGroup
        bodies = [getattr(node, "conditions", None)]
    else:
        return None
    children: list[Any] = []
    for body in bodies:
        if isinstance(body, list):
            children.extend(body)
        elif isinstance(body, dict):
            children.append(body)
    return children


def check_condition_tree(nodes: object, field: str, *, depth: int = 0) -> None:
    """Bound a list of condition nodes (raw dicts or models) before pydantic builds them.

    ``depth`` is the number of groups the list already sits in. Raises ``ValueError`` naming
    ``field`` when groups nest deeper than ``condition_depth`` or the nodes number more than
    ``conditions_per_rule``. Input of another shape passes: pydantic reports it.
    """
    if not isinstance(nodes, list):
        return
    limits = _limits.DEFAULT_LIMITS
    max_depth, max_nodes = limits.condition_depth, limits.conditions_per_rule
    if len(nodes) > max_nodes:
        raise InvalidInputError(
            f"more than {max_nodes} conditions (leaves and groups) in one rule", field=field
        )
    count = 0
    stack: list[tuple[Any, int]] = [(node, depth) for node in nodes]
    while stack:
        node, level = stack.pop()
        count += 1
        if count > max_nodes:
            raise InvalidInputError(
                f"more than {max_nodes} conditions (leaves and groups) in one rule", field=field
            )
        children = _children(node)
        if children is None:
            continue
        if level + 1 > max_depth:
            raise InvalidInputError(
                f"condition groups nested deeper than {max_depth} levels", field=field
            )
        if count + len(stack) + len(children) > max_nodes:
            raise InvalidInputError(
                f"more than {max_nodes} conditions (leaves and groups) in one rule", field=field
            )
        stack.extend((child, level + 1) for child in children)
