"""One snapshot of the cluster as this node knows it: what `mft status` and the console show.

Only the primary knows how every member is doing (it pushes to and checks each one); a
secondary asks the primary, and when the primary cannot be reached it says so, with the
little it knows itself.
"""

from __future__ import annotations

from typing import Any

from ..model.listen import parse_listen
from ..model.config import ADMIN_PORT, ClusterConfig, Member
from .monitor import MemberHealth, Monitor
from .state import NodeState
from .sync import SyncEngine


def member_row(state: NodeState, engine: SyncEngine | None, monitor: Monitor | None,
               cfg: ClusterConfig, member: Member, samples: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": member.id, "name": member.name, "address": member.address,
        "admin_port": member.admin_port, "role": member.role,
        "sync_enabled": member.sync_enabled,
        "host_key_fingerprint": member.host_key_fingerprint,
        "lb_state": member.lb_state, "lb_weight": member.lb_weight,
    }
    if member.id == state.node.node_id:
        lb = state.lb_info() or {}
        row.update(_own_services(state), lb_answer=lb.get("answer"),
                   lb_reason=lb.get("reason"), sessions=state.session_count())
        row.update(state="up", since=None, latency_ms=None, check_error=None,
                   last_synchronized=None, version=cfg.version, epoch=cfg.epoch,
                   config_hash=state.config_hash, in_sync=True, drift=False, behind=False,
                   last_error=None, consecutive_failures=0)
        if samples:
            row["sync_results"] = []
        return row
    if state.role != "primary":  # only the primary knows what its members hold
        row.update(file_check="unknown", file_check_error=None, agent_check="unknown",
                   agent_check_error=None, file_port=None, agent_port=None, lb_answer=None,
                   lb_reason=None, sessions=None)
        row.update(state="unknown", since=None, latency_ms=None, check_error=None,
                   last_synchronized=None, version=None, epoch=None, config_hash=None,
                   in_sync=None, drift=None, behind=None, last_error=None,
                   consecutive_failures=None)
        return row
    status = engine.status(member.id) if engine else None
    health = monitor.health.get(member.id) if monitor else None
    held = status.hash_held if status else None
    version = status.version_held if status else None
    in_sync = held is not None and held == state.config_hash
    row.update(health.to_dict(samples) if health else
               {**MemberHealth().to_dict(samples), "since": None})
    row.update(
        last_synchronized=status.last_synchronized if status else None,
        version=version, epoch=status.epoch_held if status else None, config_hash=held,
        in_sync=in_sync,
        # Drift: other content under the primary's own version; behind: an older version.
        drift=held is not None and not in_sync and version == cfg.version,
        behind=held is not None and not in_sync and version != cfg.version,
        last_error=status.last_error if status else None,
        consecutive_failures=status.consecutive_failures if status else 0)
    if samples:
        row["sync_results"] = list(status.results) if status else []
    return row


def _own_services(state: NodeState) -> dict[str, Any]:
    """This node's own file service and agent, as it knows them (no check needed)."""
    files = state.file_address is not None
    agent = state.agent_address is not None
    return {"file_check": "up" if files else "unknown", "file_check_error": None,
            "agent_check": "up" if agent else "unknown", "agent_check_error": None,
            "file_port": state.file_address[1] if files else None,
            "agent_port": state.agent_address[1] if agent else None}


def snapshot(state: NodeState, engine: SyncEngine | None, monitor: Monitor | None,
             samples: bool = False) -> dict[str, Any]:
    """``samples`` adds each member's last 60 checks (time, ok, latency, error)."""
    cfg = state.cluster
    if cfg.members:
        members = cfg.members
    else:  # standalone: the node itself is the whole "cluster"
        host, port = state.admin_address or parse_listen(state.node.admin_listen,
                                                         any_port=True)
        members = (Member(state.node.node_id, state.node.name, host, port or ADMIN_PORT,
                          role=state.role,
                          host_key_fingerprint=state.admin_host_key_fingerprint),)
    servers = [member_row(state, engine, monitor, cfg, m, samples) for m in members]
    primary = cfg.primary
    return {
        "cluster": {
            "cluster_id": cfg.cluster_id, "epoch": cfg.epoch, "version": cfg.version,
            "config_hash": state.config_hash,
            "primary": primary.name if primary else None,
            "node": state.node.name, "role": state.role, "fenced": state.fenced,
            "sync": {"enabled": cfg.sync.enabled, "interval_s": cfg.sync.interval_s},
            "monitor": {"period_s": cfg.monitor.period_s},
            "members_up": sum(1 for s in servers if s["state"] == "up"),
            "members_total": len(servers),
            "seq": state.events.last_seq,
        },
        "servers": servers,
    }


def unreachable_primary(view: dict[str, Any], reason: str) -> dict[str, Any]:
    """A secondary's own view, when the primary could not be asked: the primary is down as
    far as this node can tell, and the others are unknown."""
    for row in view["servers"]:
        if row["role"] == "primary":
            row.update(state="down", check_error=reason)
    view["cluster"]["members_up"] = sum(1 for s in view["servers"] if s["state"] == "up")
    view["cluster"]["primary_error"] = reason
    return view
