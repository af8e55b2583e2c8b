"""The Balancer cell of the servers table and `mft servers list`."""

from __future__ import annotations

import pytest

from tui.model.lb_status import lb_cell


@pytest.mark.parametrize("server, cell", [
    ({"lb_answer": "ready", "lb_state": "active", "sessions": 3}, "ready (3)"),
    ({"lb_answer": "drain", "lb_state": "drain", "sessions": 2}, "draining (2)"),
    ({"lb_answer": "ready", "lb_state": "drain", "sessions": 2}, "draining (2)"),  # not yet
    ({"lb_answer": None, "lb_state": "maint", "sessions": None}, "maint"),
    ({"lb_answer": "down", "lb_state": "active", "sessions": 0}, "down (0)"),
    ({"lb_answer": None, "lb_state": "active"}, "-"),
    ({"lb_answer": "ready", "file_check": "down", "sessions": 1}, "files down"),
    ({"lb_answer": "ready", "lb_weight": 50, "sessions": 1}, "ready 50% (1)"),
    ({"lb_answer": "ready", "lb_weight": 100, "sessions": 1}, "ready (1)"),
    ({"lb_answer": "drain", "lb_state": "drain", "lb_weight": 50}, "draining"),
])
def test_the_cell_says_what_the_balancer_is_told(server: dict, cell: str) -> None:
    assert lb_cell(server) == cell
