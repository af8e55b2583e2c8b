"""TOML <-> typed config, with validation that names the file, the key and the problem."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tomllib
from dataclasses import asdict
from typing import Any

import tomli_w

from .config import (
    ADMIN_SITE,
    ROLES,
    SITE_KINDS,
    SYNC_INTERVAL_MAX_S,
    SYNC_INTERVAL_MIN_S,
    MONITOR_PERIOD_MAX_S,
    MONITOR_PERIOD_MIN_S,
    LB_STATES,
    LB_WEIGHT_DEFAULT,
    LB_WEIGHT_MAX,
    LB_WEIGHT_MIN,
    MAX_LAG_MAX_S,
    MAX_LAG_MIN_S,
    SERVICE_CHECK_MAX_S,
    SERVICE_CHECK_MIN_S,
    PROXY_MODES,
    AutobanSettings,
    ClusterConfig,
    LoadBalancerSettings,
    Member,
    MonitorSettings,
    NodeConfig,
    Site,
    SyncSettings,
    User,
)
from .ipfilter import IpFilterError, Rule
from .listen import parse_listen
from .passwords import PasswordHashError, parse_hash
from .validate import NAME_PATTERN, ConfigError, Table

CLUSTER_FILE = "cluster.toml"
NODE_FILE = "node.toml"


# -- cluster.toml ---------------------------------------------------------------------------

def cluster_to_dict(cfg: ClusterConfig) -> dict[str, Any]:
    return {
        "cluster_id": cfg.cluster_id,
        "epoch": cfg.epoch,
        "version": cfg.version,
        "sync": asdict(cfg.sync),
        "monitor": asdict(cfg.monitor),
        "autoban": asdict(cfg.autoban),
        "sites": [
            {
                "name": s.name, "kind": s.kind, "system": s.system, "ip_default": s.ip_default,
                "rules": [r.to_dict() for r in s.rules],
            }
            for s in cfg.sites
        ],
        "users": [
            {
                "name": u.name, "site": u.site, "password_hash": u.password_hash,
                "authorized_keys": list(u.authorized_keys), "home": u.home,
                "read_only": u.read_only,
            }
            for u in cfg.users
        ],
        "members": [_member_dict(m) for m in cfg.members],
        "removed_members": list(cfg.removed_members),
        "file_service": {"host_keys": list(cfg.file_host_keys),
                         "storage_root": cfg.storage_root},
    } | _load_balancer_dict(cfg.load_balancer)


# Load-balancing fields are written only when they differ from their defaults: a document
# that does not use them reads (and hashes) as it did before they existed, so members
# still running the previous release keep taking it during a rolling upgrade.

def _member_dict(m: Member) -> dict[str, Any]:
    out = asdict(m)
    if out["lb_state"] == "active":
        del out["lb_state"]
    if out["lb_weight"] == LB_WEIGHT_DEFAULT:
        del out["lb_weight"]
    return out


def _load_balancer_dict(lb: LoadBalancerSettings) -> dict[str, Any]:
    if lb == LoadBalancerSettings():
        return {}
    out = {"proxy_protocol": lb.proxy_protocol, "trusted": list(lb.trusted),
           "max_lag_s": lb.max_lag_s}
    if lb.check_period_s != LoadBalancerSettings.check_period_s:
        out["check_period_s"] = lb.check_period_s
    return {"load_balancer": out}


def cluster_from_dict(data: Any, file: str = CLUSTER_FILE) -> ClusterConfig:
    top = Table(data, file)
    sync_t = top.table("sync")
    sync = SyncSettings(
        enabled=sync_t.bool("enabled", True),
        interval_s=sync_t.int("interval_s", 60, minimum=SYNC_INTERVAL_MIN_S,
                              maximum=SYNC_INTERVAL_MAX_S),
    )
    sync_t.done()
    monitor_t = top.table("monitor")
    monitor = MonitorSettings(
        period_s=monitor_t.int("period_s", 5, minimum=MONITOR_PERIOD_MIN_S,
                               maximum=MONITOR_PERIOD_MAX_S))
    monitor_t.done()
    ban_t = top.table("autoban")
    autoban = AutobanSettings(
        enabled=ban_t.bool("enabled", True),
        max_failures=ban_t.int("max_failures", 10, minimum=1, maximum=1000),
        window_s=ban_t.int("window_s", 300, minimum=1, maximum=86400),
        ban_s=ban_t.int("ban_s", 3600, minimum=1, maximum=366 * 86400),
    )
    ban_t.done()
    files_t = top.table("file_service")
    host_keys = files_t.str_list("host_keys")
    storage_root = files_t.str("storage_root", "")
    if storage_root and (not storage_root.startswith("/") or storage_root.strip("/") == ""):
        raise files_t.error("storage_root", "must be an absolute path other than / (or "
                                            "empty: each node's files/ folder)")
    files_t.done()
    load_balancer = _load_balancer(top.table("load_balancer"))
    cfg = ClusterConfig(
        cluster_id=top.str("cluster_id", ""),
        epoch=top.int("epoch", 0, minimum=0, maximum=2**53),
        version=top.int("version", required=True, minimum=1, maximum=2**53),
        sync=sync,
        monitor=monitor,
        autoban=autoban,
        sites=tuple(_site(t) for t in top.tables("sites")),
        users=tuple(_user(t) for t in top.tables("users")),
        members=tuple(_member(t) for t in top.tables("members")),
        file_host_keys=host_keys,
        storage_root=storage_root,
        removed_members=top.str_list("removed_members"),
        load_balancer=load_balancer,
    )
    top.done()
    _check_cluster(cfg, file)
    return cfg


def _load_balancer(t: Table) -> LoadBalancerSettings:
    trusted = t.str_list("trusted")
    for i, cidr in enumerate(trusted):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise t.error(f"trusted[{i}]", f"{cidr!r} is not an IP address or CIDR "
                                           "network") from None
    settings = LoadBalancerSettings(
        proxy_protocol=t.str("proxy_protocol", "off", choices=PROXY_MODES),
        trusted=tuple(str(ipaddress.ip_network(c, strict=False)) for c in trusted),
        max_lag_s=t.int("max_lag_s", 30, minimum=MAX_LAG_MIN_S, maximum=MAX_LAG_MAX_S),
        check_period_s=t.int("check_period_s", LoadBalancerSettings.check_period_s,
                             minimum=SERVICE_CHECK_MIN_S, maximum=SERVICE_CHECK_MAX_S),
    )
    if settings.proxy_protocol != "off" and not settings.trusted:
        raise t.error("trusted", f"proxy_protocol {settings.proxy_protocol!r} needs the "
                                 "load balancers' addresses: nobody else may send a header")
    t.done()
    return settings


def _site(t: Table) -> Site:
    rules = []
    for rt in t.tables("rules"):
        try:
            rules.append(Rule.from_dict(rt.data))
        except IpFilterError as exc:
            raise ConfigError(rt.file, rt.path, str(exc)) from None
    site = Site(
        name=t.str("name", required=True, pattern=NAME_PATTERN),
        kind=t.str("kind", required=True, choices=SITE_KINDS),
        system=t.bool("system", False),
        ip_default=t.str("ip_default", "deny", choices=("allow", "deny")),
        rules=tuple(rules),
    )
    t.done()
    return site


def _user(t: Table) -> User:
    user = User(
        name=t.str("name", required=True, pattern=NAME_PATTERN),
        site=t.str("site", required=True),
        password_hash=t.str("password_hash", ""),
        authorized_keys=t.str_list("authorized_keys"),
        home=t.str("home", ""),
        read_only=t.bool("read_only", False),
    )
    if user.password_hash:
        try:
            parse_hash(user.password_hash)
        except PasswordHashError as exc:
            raise t.error("password_hash", str(exc)) from None
    t.done()
    return user


def _member(t: Table) -> Member:
    member = Member(
        id=t.str("id", required=True, pattern=NAME_PATTERN),
        name=t.str("name", required=True, pattern=NAME_PATTERN),
        address=t.str("address", required=True),
        admin_port=t.int("admin_port", 14983, minimum=1, maximum=65535),
        role=t.str("role", "secondary", choices=ROLES),
        sync_enabled=t.bool("sync_enabled", True),
        host_key_fingerprint=t.str("host_key_fingerprint", ""),
        lb_state=t.str("lb_state", "active", choices=LB_STATES),
        lb_weight=t.int("lb_weight", LB_WEIGHT_DEFAULT, minimum=LB_WEIGHT_MIN,
                        maximum=LB_WEIGHT_MAX),
    )
    if not member.address:
        raise t.error("address", "must not be empty")
    t.done()
    return member


def _check_cluster(cfg: ClusterConfig, file: str) -> None:
    """Cross-record rules that no single table can check on its own."""
    _unique(file, "sites", "name", [s.name for s in cfg.sites])
    _unique(file, "users", "name", [u.name for u in cfg.users])
    _unique(file, "members", "id", [m.id for m in cfg.members])
    admin_sites = [s for s in cfg.sites if s.kind == "admin"]
    if len(admin_sites) != 1 or admin_sites[0].name != ADMIN_SITE:
        raise ConfigError(file, "sites", f"there must be exactly one site of kind 'admin', "
                                         f"named {ADMIN_SITE!r}")
    site_names = {s.name for s in cfg.sites}
    for i, user in enumerate(cfg.users):
        if user.site not in site_names:
            raise ConfigError(file, f"users[{i}].site", f"no site named {user.site!r}")


def _unique(file: str, key: str, field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(file, f"{key}[{i}].{field}", f"duplicate {field} {value!r}")
        seen.add(value)


def dumps_cluster(cfg: ClusterConfig) -> bytes:
    return tomli_w.dumps(cluster_to_dict(cfg)).encode("utf-8")


def loads_cluster(data: bytes | str, file: str = CLUSTER_FILE) -> ClusterConfig:
    return cluster_from_dict(_parse_toml(data, file), file)


def config_hash(cfg: ClusterConfig) -> str:
    """Content hash members compare to detect drift; independent of TOML formatting."""
    canonical = json.dumps(cluster_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


REDACTED = "<redacted>"


def redact_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """Blank every secret of a cluster document in place: the one place that knows which
    fields are secret. The shape stays that of cluster.toml, so readers need no other schema.
    """
    users = doc.get("users")
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and user.get("password_hash"):
            user["password_hash"] = REDACTED
    files = doc.get("file_service")
    if isinstance(files, dict) and isinstance(files.get("host_keys"), list):
        files["host_keys"] = [REDACTED for _ in files["host_keys"]]
    return doc


def public_cluster_dict(cfg: ClusterConfig) -> dict[str, Any]:
    """The document without secrets: no password hashes, no private keys."""
    return redact_secrets(cluster_to_dict(cfg))


def redact_toml(data: bytes) -> bytes:
    """A cluster.toml (or a backup of one) with its secrets blanked.

    Text that does not parse is withheld whole rather than risk passing a secret through.
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return b"# this file does not parse as TOML; its content is withheld\n"
    return tomli_w.dumps(redact_secrets(doc)).encode("utf-8")


# -- node.toml ------------------------------------------------------------------------------

def node_to_dict(cfg: NodeConfig) -> dict[str, Any]:
    return asdict(cfg)


def node_from_dict(data: Any, file: str = NODE_FILE) -> NodeConfig:
    t = Table(data, file)
    cfg = NodeConfig(
        node_id=t.str("node_id", required=True, pattern=NAME_PATTERN),
        name=t.str("name", required=True, pattern=NAME_PATTERN),
        role=t.str("role", "standalone", choices=ROLES),
        admin_listen=t.str("admin_listen", NodeConfig.admin_listen),
        admin_host_key=t.str("admin_host_key", NodeConfig.admin_host_key),
        primary_key=t.str("primary_key", ""),
        storage_root=t.str("storage_root", ""),
        file_listen=t.str("file_listen", NodeConfig.file_listen),
        agent_listen=t.str("agent_listen", NodeConfig.agent_listen),
    )
    t.done()
    for key in ("admin_listen", "file_listen", "agent_listen"):
        try:
            parse_listen(getattr(cfg, key), any_port=True)
        except ValueError as exc:
            raise t.error(key, str(exc)) from None
    if cfg.storage_root and not cfg.storage_root.startswith("/"):
        raise t.error("storage_root", "must be an absolute path (or empty: the cluster's)")
    if not cfg.admin_host_key:
        raise t.error("admin_host_key", "must name the admin host key file")
    return cfg


def dumps_node(cfg: NodeConfig) -> bytes:
    return tomli_w.dumps(node_to_dict(cfg)).encode("utf-8")


def loads_node(data: bytes | str, file: str = NODE_FILE) -> NodeConfig:
    return node_from_dict(_parse_toml(data, file), file)


def _parse_toml(data: bytes | str, file: str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
