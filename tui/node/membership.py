"""The secondary's side of clustering: being backed up, joining, and taking pushes.

A push is applied only if its (epoch, version) is newer than what the node holds; the
same pair with the same hash is a no-op; an older epoch is refused with STALE_EPOCH so a
stale primary learns it has been replaced. Only the cluster key may push. A document
that would shut the sender out of this node's Admin Site is refused rather than applied.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh

from ..atomic import atomic_write
from ..model.codec import cluster_from_dict, config_hash, dumps_cluster, redact_toml
from ..model.config import ADMIN_SITE, CLUSTER_USER, ClusterConfig
from ..model.validate import ConfigError
from ..protocol.rpc import (
    ALREADY_MEMBER,
    FORBIDDEN,
    HASH_MISMATCH,
    INVALID_PARAMS,
    LOCKOUT,
    STALE_EPOCH,
    STALE_VERSION,
    Params,
    RpcError,
)
from . import cluster_key
from .methods import CallContext, method


async def _document(p: Params) -> tuple[ClusterConfig, str, bytes]:
    """The pushed document (an object shaped like cluster.toml), validated as a load would,
    with its hash and the TOML to store.

    It travels as JSON rather than TOML text: the whole message is JSON already, and
    parsing a large document as TOML cost most of a push.
    """
    doc = p.get("config", dict)
    claimed = p.get("config_hash", str)
    try:
        # Validating and rendering a large document takes a while: in a thread, so the
        # node keeps serving.
        cfg, data = await asyncio.to_thread(_load_pushed, doc)
    except ConfigError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), {"field": "config"}) from None
    actual = config_hash(cfg)
    if actual != claimed:
        raise RpcError(HASH_MISMATCH, f"the configuration's hash is {actual[:12]}…, not the "
                                      f"{claimed[:12]}… it was sent with")
    return cfg, actual, data


def _load_pushed(doc: dict[str, Any]) -> tuple[ClusterConfig, bytes]:
    cfg = cluster_from_dict(doc, "pushed cluster document")
    return cfg, dumps_cluster(cfg)


def _check_not_elsewhere(ctx: CallContext, cluster_id: str) -> None:
    held = ctx.state.cluster.cluster_id
    if held and held != cluster_id:
        raise RpcError(ALREADY_MEMBER, f"this node belongs to another cluster ({held}); "
                                       "remove it from that cluster first",
                       {"cluster_id": held})


def _check_sender_admitted(ctx: CallContext, cfg: ClusterConfig) -> None:
    decision = cfg.site(ADMIN_SITE).ipfilter.decide(ctx.peer_address)
    if not decision.allowed:
        raise RpcError(LOCKOUT, f"this configuration's Admin Site IP filter would deny the "
                                f"primary's address {ctx.peer_address} on this node "
                                f"({decision.describe()}); allow it on the primary first",
                       {"address": ctx.peer_address})


@method("cluster.backup")
async def cluster_backup(ctx: CallContext, p: Params) -> dict[str, Any]:
    """Keep a full copy of the current document here; hand a redacted one to the caller."""
    p.done()
    cfg = ctx.state.cluster
    data = dumps_cluster(cfg)
    path = ctx.state.home.backups / f"before-join.{cfg.epoch}.{cfg.version}.toml"
    path.parent.mkdir(exist_ok=True, mode=0o700)
    await asyncio.to_thread(atomic_write, path, data)
    return {"config": redact_toml(data).decode("utf-8"), "epoch": cfg.epoch,
            "version": cfg.version, "config_hash": ctx.state.config_hash,
            "saved_as": str(path.relative_to(ctx.state.home.path)),
            "peer_address": ctx.peer_address}


@method("cluster.key.install")
async def cluster_key_install(ctx: CallContext, p: Params) -> dict[str, Any]:
    cluster_id = p.get("cluster_id", str)
    key_text = p.get("key", str)
    p.done()
    _check_not_elsewhere(ctx, cluster_id)
    try:
        key = await asyncio.to_thread(cluster_key.install_pending, ctx.state.home, key_text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise RpcError(INVALID_PARAMS, f"not a private key: {exc}", {"field": "key"}) from None
    return {"fingerprint": key.get_fingerprint("sha256")}


@method("cluster.join")
async def cluster_join(ctx: CallContext, p: Params) -> dict[str, Any]:
    cfg, digest, data = await _document(p)
    p.done()
    _check_not_elsewhere(ctx, cfg.cluster_id)
    if not cfg.cluster_id:
        raise RpcError(INVALID_PARAMS, "a cluster document must have a cluster_id",
                       {"field": "config"})
    if not cluster_key.has_pending(ctx.state.home):
        raise RpcError(INVALID_PARAMS, "install the cluster key (cluster.key.install) first")
    _check_sender_admitted(ctx, cfg)
    # Joining overwrites whatever this node held, whatever its version: that is the point.
    await ctx.state.apply(cfg, data, actor=f"{ctx.username}@{ctx.peer_address}",
                          summary=f"joined cluster {cfg.cluster_id}",
                          check=lambda current: _check_not_elsewhere(ctx, cfg.cluster_id))
    await asyncio.to_thread(cluster_key.commit_pending, ctx.state.home)
    await ctx.state.set_role("secondary")
    return {"config_hash": digest, "epoch": cfg.epoch, "version": cfg.version}


def _require_cluster_key(ctx: CallContext, what: str) -> None:
    if ctx.username != CLUSTER_USER:
        raise RpcError(FORBIDDEN, f"only the cluster key may {what}")


def check_sender_is_member(current: ClusterConfig, sender: str) -> None:
    """Members act only on members: a node taken out of the cluster while it was away still
    holds the cluster key, and is refused by its id."""
    if sender in current.removed_members:
        raise RpcError(FORBIDDEN, f"node {sender} was removed from cluster "
                                  f"{current.cluster_id}; it is no longer a member",
                       {"node_id": sender})
    if current.member(sender) is None:
        raise RpcError(FORBIDDEN, f"node {sender} is not a member of cluster "
                                  f"{current.cluster_id or '(none)'}", {"node_id": sender})


async def follow_document_role(ctx: CallContext, sender: str) -> None:
    """The membership in the document says which role this node plays: a primary that
    was replaced while it was away becomes a secondary with the new primary's push."""
    me = ctx.state.cluster.member(ctx.state.node.node_id)
    if me is not None and me.role != ctx.state.role:
        await ctx.state.set_role(me.role, reason=f"the configuration pushed by {sender} "
                                                 f"says so (epoch {ctx.state.cluster.epoch})")


@method("cluster.push")
async def cluster_push(ctx: CallContext, p: Params) -> dict[str, Any]:
    _require_cluster_key(ctx, "push a configuration")
    cfg, digest, data = await _document(p)
    sender = p.get("from", str)
    p.done()
    _check_sender_admitted(ctx, cfg)
    applied = True

    def newer_only(current: ClusterConfig) -> None:
        nonlocal applied
        check_sender_is_member(current, sender)
        if cfg.cluster_id != current.cluster_id:
            raise RpcError(ALREADY_MEMBER, f"this node belongs to cluster "
                                           f"{current.cluster_id or '(none)'}, not "
                                           f"{cfg.cluster_id}")
        if cfg.epoch < current.epoch:
            raise RpcError(STALE_EPOCH, f"epoch {cfg.epoch} is older than this node's "
                                        f"{current.epoch}: another node has been promoted "
                                        "primary since", {"epoch": current.epoch})
        if (cfg.epoch, cfg.version) < (current.epoch, current.version):
            raise RpcError(STALE_VERSION, f"version {cfg.version} is older than this node's "
                                          f"{current.version}", {"version": current.version})
        if (cfg.epoch, cfg.version) == (current.epoch, current.version):
            if digest != ctx.state.config_hash:
                raise RpcError(HASH_MISMATCH, f"version {cfg.version} here has other content "
                                              "than the one pushed")
            applied = False
            raise _NothingToDo

    try:
        await ctx.state.apply(cfg, data, actor=f"{ctx.username}@{ctx.peer_address}",
                              summary=f"pushed by {sender}", check=newer_only)
    except _NothingToDo:
        pass
    if applied:
        ctx.state.fenced = None  # a newer primary has taken this node in
        await follow_document_role(ctx, sender)
    held = ctx.state.cluster
    return {"applied": applied, "epoch": held.epoch, "version": held.version,
            "config_hash": ctx.state.config_hash}


def _failover(ctx: CallContext) -> Any:
    assert ctx.cluster is not None, "the node runs without its cluster machinery"
    return ctx.cluster.failover


def _member_caller(ctx: CallContext, p: Params, what: str) -> str:
    """The calling member's id (``from``), once the params are complete and the caller is
    known to be a member holding the cluster key."""
    _require_cluster_key(ctx, what)
    sender = p.get("from", str)
    p.done()
    check_sender_is_member(ctx.state.cluster, sender)
    return sender


@method("cluster.demote")
async def cluster_demote(ctx: CallContext, p: Params) -> dict[str, Any]:
    """A member being promoted tells the old primary to stand down before it takes over."""
    epoch = p.get("epoch", int)
    sender = _member_caller(ctx, p, "demote a node")
    return await _failover(ctx).demote(epoch, sender)


@method("cluster.leave")
async def cluster_leave(ctx: CallContext, p: Params) -> dict[str, Any]:
    """The primary takes this node out of the cluster: it becomes standalone."""
    sender = _member_caller(ctx, p, "take a node out of the cluster")
    primary = ctx.state.cluster.primary
    if primary is None or primary.id != sender:
        raise RpcError(FORBIDDEN, f"only the primary "
                                  f"({primary.name if primary else 'none known'}) may take "
                                  "this node out of the cluster")
    return await _failover(ctx).leave(f"{sender}@{ctx.peer_address}")


@method("cluster.document")
async def cluster_document(ctx: CallContext, p: Params) -> dict[str, Any]:
    """The whole document, secrets included, for a member taking over as primary."""
    _member_caller(ctx, p, "read the whole configuration")
    return _failover(ctx).document()


class _NothingToDo(Exception):
    """The pushed document is the one already held."""
