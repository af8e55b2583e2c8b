"""How a server's standing with the load balancer reads in a table: what its agent tells
HAProxy, and its open sessions."""

from __future__ import annotations

from typing import Any

from .config import LB_WEIGHT_DEFAULT

_SET = {"active": "-", "drain": "draining", "maint": "maint"}


def lb_cell(server: dict[str, Any]) -> str:
    """``ready (3)``, ``ready 50% (3)``, ``draining (2)``, ``down``...: the agent's answer
    (``draining`` while a drain is set but not yet answered) with the weight the
    configuration sets for the server when it is not the default, then the sessions open on the server; ``files down`` when the
    primary's check of its file port fails."""
    if server.get("file_check") == "down":
        return "files down"  # HAProxy's banner check fails too, whatever the agent says
    answer = server.get("lb_answer")
    wanted = server.get("lb_state") or "active"
    if answer is None or (wanted != "active" and answer == "ready"):
        answer = _SET.get(wanted, "-")  # set in the configuration, not yet answered
    elif answer == "drain":
        answer = "draining"
    weight = server.get("lb_weight")
    if answer == "ready" and isinstance(weight, int) and weight != LB_WEIGHT_DEFAULT:
        answer = f"ready {weight}%"
    sessions = server.get("sessions")
    return answer if sessions is None else f"{answer} ({sessions})"
