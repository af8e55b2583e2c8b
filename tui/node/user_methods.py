"""Users: `users.list/add/remove/set_password/set_keys/set_read_only`.

Every change is a configuration change on the primary (or a standalone node), so it reaches
every member with the next sync. Passwords arrive in the request (over the admin channel),
are hashed with scrypt off the event loop and never leave the node again; keys are checked
to be OpenSSH public keys; a home folder is relative to the storage root and cannot climb
out of it.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import replace
from typing import Any

import asyncssh

from ..model.config import ADMIN_SITE, CLUSTER_USER, DEFAULT_FILE_SITE, ClusterConfig, User
from ..model.passwords import DEFAULT_LOG_N, hash_password, parse_hash
from ..model.validate import NAME_PATTERN
from ..protocol.rpc import FORBIDDEN, INVALID_PARAMS, NOT_FOUND, Params, RpcError
from .methods import CallContext, method

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_KEYS = 100


def user_dict(user: User) -> dict[str, Any]:
    return {"name": user.name, "site": user.site, "has_password": bool(user.password_hash),
            "keys": [_key_summary(k) for k in user.authorized_keys],
            "home": user.home or user.name, "read_only": user.read_only}


def _key_summary(line: str) -> dict[str, str]:
    try:
        key = asyncssh.import_public_key(line)
        return {"algorithm": key.get_algorithm(), "fingerprint": key.get_fingerprint(),
                "comment": key.get_comment() or ""}
    except (asyncssh.KeyImportError, ValueError):
        return {"algorithm": "?", "fingerprint": "unreadable key", "comment": ""}


def _name(p: Params) -> str:
    name = p.get("name", str)
    if not NAME_PATTERN.match(name):
        raise RpcError(INVALID_PARAMS, f"user name {name!r}: letters, digits, '.', '_' and "
                                       "'-', at most 63, starting with a letter or digit",
                       {"field": "name"})
    return name


def _password(p: Params, required: bool) -> str | None:
    password = p.get("password", str, ... if required else None)
    if password is None:
        return None
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise RpcError(INVALID_PARAMS, f"a password has {MIN_PASSWORD_LENGTH} to "
                                       f"{MAX_PASSWORD_LENGTH} characters",
                       {"field": "password"})
    return password


def _keys(p: Params) -> tuple[str, ...] | None:
    raw = p.get("keys", list, None)
    if raw is None:
        return None
    if len(raw) > MAX_KEYS:
        raise RpcError(INVALID_PARAMS, f"at most {MAX_KEYS} keys", {"field": "keys"})
    keys = []
    for i, line in enumerate(raw):
        if not isinstance(line, str):
            raise RpcError(INVALID_PARAMS, f"keys[{i}] must be a string", {"field": f"keys[{i}]"})
        try:
            key = asyncssh.import_public_key(line.strip())
        except (asyncssh.KeyImportError, ValueError):
            raise RpcError(INVALID_PARAMS, f"keys[{i}] is not an OpenSSH public key "
                                           "(one line, as in a .pub file)",
                           {"field": f"keys[{i}]"}) from None
        keys.append(key.export_public_key().decode().strip())
    return tuple(keys)


def _home_dir(p: Params) -> str | None:
    home = p.get("home_dir", str, None)
    if home is None:
        return None
    normal = posixpath.normpath(home)
    if (not home or home.startswith("/") or normal in ("..", ".") or normal.startswith("../")
            or "\0" in home):
        raise RpcError(INVALID_PARAMS, "home_dir is a folder under the storage root, "
                                       "relative, without '..'", {"field": "home_dir"})
    return normal


def _existing(cfg: ClusterConfig, name: str) -> User:
    user = cfg.user(name)
    if user is None:
        raise RpcError(NOT_FOUND, f"no user named {name!r}", {"field": "name"})
    return user


def _file_user_only(user: User) -> None:
    if user.name == CLUSTER_USER:
        raise RpcError(FORBIDDEN, f"{CLUSTER_USER} is the members' own account; it is "
                                  "managed by the cluster", {"field": "name"})


async def _hash(password: str, cfg: ClusterConfig) -> str:
    # The cost of the dearest hash already in use, so new ones are no weaker; in a
    # thread: a hash takes a good part of a second.
    costs = [parse_hash(u.password_hash)[0] for u in cfg.users if u.password_hash]
    return await asyncio.to_thread(hash_password, password, max(costs, default=DEFAULT_LOG_N))


async def _change(ctx: CallContext, summary: str, edit: Any) -> ClusterConfig:
    return await ctx.state.change(edit, actor=f"{ctx.username}@{ctx.peer_address}",
                                  summary=summary)


@method("users.list", quick=True)
async def users_list(ctx: CallContext, p: Params) -> dict[str, Any]:
    site = p.get("site", str, None)
    p.done()
    users = [u for u in ctx.state.cluster.users
             if u.name != CLUSTER_USER and (site is None or u.site == site)]
    return {"users": [user_dict(u) for u in users], "version": ctx.state.cluster.version}


@method("users.add")
async def users_add(ctx: CallContext, p: Params) -> dict[str, Any]:
    name = _name(p)
    password = _password(p, required=False)
    keys = _keys(p) or ()
    read_only = p.get("read_only", bool, False)
    home = _home_dir(p) or ""
    site = p.get("site", str, DEFAULT_FILE_SITE)
    p.done()
    if site not in {s.name for s in ctx.state.cluster.sites}:
        raise RpcError(NOT_FOUND, f"no site named {site!r}", {"field": "site"})
    if password is None and not keys:
        raise RpcError(INVALID_PARAMS, "give the user a password or a key (or both)",
                       {"field": "password"})
    if ctx.state.cluster.user(name) is not None:
        raise RpcError(INVALID_PARAMS, f"a user named {name!r} exists already",
                       {"field": "name"})
    hashed = await _hash(password, ctx.state.cluster) if password else ""

    def edit(cfg: ClusterConfig) -> ClusterConfig:
        if cfg.user(name) is not None:  # added meanwhile
            raise RpcError(INVALID_PARAMS, f"a user named {name!r} exists already",
                           {"field": "name"})
        return cfg.with_user(User(name, site, hashed, keys, home, read_only))

    new = await _change(ctx, f"user {name} added to site {site}", edit)
    return {"user": user_dict(_existing(new, name)), "version": new.version}


@method("users.remove")
async def users_remove(ctx: CallContext, p: Params) -> dict[str, Any]:
    name = _name(p)
    p.done()
    user = _existing(ctx.state.cluster, name)
    _file_user_only(user)

    def edit(cfg: ClusterConfig) -> ClusterConfig:
        current = _existing(cfg, name)
        if current.site == ADMIN_SITE and not [
                u for u in cfg.users if u.site == ADMIN_SITE and u.name not in (
                    name, CLUSTER_USER)]:
            raise RpcError(FORBIDDEN, f"{name} is the last admin: add another first",
                           {"field": "name"})
        return replace(cfg, users=tuple(u for u in cfg.users if u.name != name))

    new = await _change(ctx, f"user {name} removed", edit)
    return {"removed": name, "version": new.version}


async def _edit_user(ctx: CallContext, name: str, summary: str, **changes: Any) -> dict[str, Any]:
    _file_user_only(_existing(ctx.state.cluster, name))

    def edit(cfg: ClusterConfig) -> ClusterConfig:
        return cfg.with_user(replace(_existing(cfg, name), **changes))

    new = await _change(ctx, summary, edit)
    return {"user": user_dict(_existing(new, name)), "version": new.version}


@method("users.set_password")
async def users_set_password(ctx: CallContext, p: Params) -> dict[str, Any]:
    name = _name(p)
    password = _password(p, required=True)
    p.done()
    _existing(ctx.state.cluster, name)
    assert password is not None
    hashed = await _hash(password, ctx.state.cluster)
    return await _edit_user(ctx, name, f"password of {name} set", password_hash=hashed)


@method("users.set_keys")
async def users_set_keys(ctx: CallContext, p: Params) -> dict[str, Any]:
    name = _name(p)
    keys = _keys(p)
    p.done()
    if keys is None:
        raise RpcError(INVALID_PARAMS, "missing field 'keys'", {"field": "keys"})
    return await _edit_user(ctx, name, f"keys of {name} set ({len(keys)})",
                            authorized_keys=keys)


@method("users.set_read_only")
async def users_set_read_only(ctx: CallContext, p: Params) -> dict[str, Any]:
    name = _name(p)
    read_only = p.get("read_only", bool)
    p.done()
    return await _edit_user(ctx, name, f"{name} {'read-only' if read_only else 'read-write'}",
                            read_only=read_only)
