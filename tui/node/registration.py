"""Adding a secondary, on the primary: the vendor guide's "Add server" made safe.

``preview`` looks and changes nothing. ``add`` runs the steps below in order, reports
each as it happens, and stops at the first failure with a diagnosis. Nothing on the
secondary's configuration changes before "push configuration"; the admin password is
used for this one connection and kept nowhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..model.codec import cluster_to_dict, config_hash
from ..model.config import ADMIN_PORT, ADMIN_SITE, CLUSTER_USER, ClusterConfig, Member, User
from ..protocol.rpc import REGISTRATION_FAILED, RpcError
from ..services.admin_client import AdminClient, Credentials
from ..services.errors import AuthFailed, ConnectError, IncompatibleVersion
from ..services.hostkeys import TrustPolicy
from ..services.target import Target
from . import cluster_key
from .state import NodeState
from .sync import SyncEngine

STEPS = ("connect", "authenticate", "check versions", "check membership", "back up",
         "install cluster key", "push configuration", "verify hash", "record member")
CONNECT_TIMEOUT_S = 10.0
Progress = Callable[[str, str, str], Awaitable[None]]


class StepFailed(Exception):
    def __init__(self, step: str, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.step, self.code, self.message, self.hint = step, code, message, hint

    def to_rpc(self) -> RpcError:
        return RpcError(REGISTRATION_FAILED, f"{self.step} failed: {self.message}",
                        {"step": self.step, "diagnosis": self.code, "hint": self.hint})


def _summary(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "epoch": cfg.get("epoch"), "version": cfg.get("version"),
        "sites": [{"name": s["name"], "rules": len(s.get("rules", []))}
                  for s in cfg.get("sites", [])],
        "users": len(cfg.get("users", [])),
        "members": len(cfg.get("members", [])),
    }


class Registration:
    def __init__(self, state: NodeState, engine: SyncEngine, admin_port: int = ADMIN_PORT):
        self.state = state
        self.engine = engine
        self.admin_port = admin_port
        self.connect_timeout = CONNECT_TIMEOUT_S

    async def _open(self, host: str, port: int, user: str, password: str,
                    fingerprint: str | None, progress: Progress | None) -> AdminClient:
        target = Target(host, port, user)
        policy = TrustPolicy.SHOW if fingerprint is None else TrustPolicy.REFUSE
        try:
            client = await AdminClient.connect(
                target, Credentials(password=password), hostkeys=self.engine.hostkeys,
                policy=policy, accept_fingerprint=fingerprint,
                local_addr=self.engine.local_addr(), connect_timeout=self.connect_timeout)
        except AuthFailed as exc:
            await _report(progress, "connect", "ok")
            raise StepFailed("authenticate", exc.code, exc.message, exc.hint) from None
        except IncompatibleVersion as exc:
            for step in ("connect", "authenticate"):
                await _report(progress, step, "ok")
            raise StepFailed("check versions", exc.code, exc.message, exc.hint) from None
        except ConnectError as exc:
            raise StepFailed("connect", exc.code, exc.message, exc.hint) from None
        await _report(progress, "connect", "ok", client.host_key_fingerprint)
        await _report(progress, "authenticate", "ok")
        return client

    async def preview(self, host: str, port: int, user: str, password: str) -> dict[str, Any]:
        client = await self._open(host, port, user, password, None, None)
        async with client:
            info = client.info
            current = await client.call("config.get")
        return {
            "fingerprint": client.host_key_fingerprint, "name": info["name"],
            "node_id": info["node_id"], "software": info["software"],
            "protocol": info["protocol"], "role": info["role"],
            "cluster_id": info["cluster_id"], "config": _summary(current["config"]),
            "warning": f"the configuration of {info['name']} will be overwritten by this "
                       "cluster's",
        }

    async def add(self, host: str, port: int, user: str, password: str, fingerprint: str,
                  progress: Progress) -> dict[str, Any]:
        client = await self._open(host, port, user, password, fingerprint, progress)
        async with client:
            info = client.info
            await _report(progress, "check versions", "ok",
                          f"protocol {info['protocol']}, software {info['software']}")
            ours = self.state.cluster
            if info["node_id"] == self.state.node.node_id:
                raise StepFailed("check membership", "SELF", "that is this node itself",
                                 "Give the address of another node.")
            if info["cluster_id"] and info["cluster_id"] != ours.cluster_id:
                raise StepFailed("check membership", "ALREADY_MEMBER",
                                 f"{info['name']} belongs to another cluster "
                                 f"({info['cluster_id']})",
                                 "Remove it from that cluster first, on that cluster's "
                                 "primary.")
            await _report(progress, "check membership", "ok")

            backup = await self._step(progress, "back up", client.call("cluster.backup"))
            self._keep_copy(info["node_id"], backup)
            await _report(progress, "back up", "ok", backup["saved_as"])

            key = cluster_key.load(self.state.home) or cluster_key.create(self.state.home)
            cluster_id = ours.cluster_id or uuid.uuid4().hex
            await self._step(progress, "install cluster key", client.call(
                "cluster.key.install", {"cluster_id": cluster_id,
                                        "key": key.export_private_key().decode()}))
            await _report(progress, "install cluster key", "ok")

            new_member = Member(id=info["node_id"], name=info["name"], address=host,
                                admin_port=port, role="secondary", sync_enabled=True,
                                host_key_fingerprint=client.host_key_fingerprint)
            edited = self._with_member(ours, cluster_id, key, new_member,
                                       backup["peer_address"])
            # Adding a member again changes nothing: push the document as it is, so the
            # node holds exactly the primary's version.
            prospective = ours if edited == ours else edited.bumped()
            digest = config_hash(prospective)
            joined = await self._step(progress, "push configuration", client.call(
                "cluster.join", {"config": cluster_to_dict(prospective),
                                 "config_hash": digest}))
            await _report(progress, "push configuration", "ok",
                          f"version {prospective.version}")

            held = (await client.call("node.info"))["config_hash"]
            if held != digest or joined["config_hash"] != digest:
                raise StepFailed("verify hash", "HASH_MISMATCH",
                                 f"{info['name']} holds {held[:12]}…, not {digest[:12]}…",
                                 "Run `mft sync now` to push the configuration again.")
            await _report(progress, "verify hash", "ok", digest[:12])

        await self._step(progress, "record member", self.state.change(
            lambda cfg: self._with_member(cfg, cluster_id, key, new_member,
                                          backup["peer_address"]),
            actor="registration", summary=f"added {new_member.name} to the cluster"))
        if self.state.role != "primary":
            await self.state.set_role("primary", reason="the first server was added")
        self.engine.refresh(new_member.id)
        await _report(progress, "record member", "ok")
        return {"member": {"id": new_member.id, "name": new_member.name,
                           "address": f"{host}:{port}"},
                "cluster_id": cluster_id, "version": self.state.cluster.version}

    def _with_member(self, cfg: ClusterConfig, cluster_id: str, key: Any, member: Member,
                     our_address: str) -> ClusterConfig:
        """The document with this node as primary, the cluster key trusted, and ``member``."""
        if not cfg.cluster_id:
            cfg = replace(cfg, cluster_id=cluster_id, epoch=max(cfg.epoch, 1))
        me = cfg.member(self.state.node.node_id) or Member(
            id=self.state.node.node_id, name=self.state.node.name, address=our_address,
            admin_port=self.admin_port, role="primary",
            host_key_fingerprint=self.state.admin_host_key_fingerprint)
        cfg = cfg.with_member(me).with_member(member)
        return cfg.with_user(User(CLUSTER_USER, ADMIN_SITE,
                                  authorized_keys=(cluster_key.public_line(key),)))

    def _keep_copy(self, node_id: str, backup: dict[str, Any]) -> None:
        folder = self.state.home.backups / "members" / node_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"cluster.{backup['epoch']}.{backup['version']}.toml"
        atomic_write(Path(path), backup["config"].encode("utf-8"))

    async def _step(self, progress: Progress, step: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except RpcError as exc:
            raise StepFailed(step, exc.name, exc.message, _hint(exc)) from None
        except ConnectError as exc:
            raise StepFailed(step, exc.code, exc.message, exc.hint) from None


def _hint(exc: RpcError) -> str:
    return {
        "ALREADY_MEMBER": "Remove it from its cluster first, on that cluster's primary.",
        "LOCKOUT": "Allow this primary's address in the Admin Site IP filter here, on the "
                   "primary, then add the server again.",
        "HASH_MISMATCH": "Add the server again.",
    }.get(exc.name, "")


async def _report(progress: Progress | None, step: str, status: str, detail: str = "") -> None:
    if progress is not None:
        await progress(step, status, detail)
