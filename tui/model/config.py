"""The two configuration documents of a node, as immutable typed values.

``ClusterConfig`` (cluster.toml) is identical on every member and carries
(epoch, version); ``NodeConfig`` (node.toml) is the node's own and never synced.
Changes are made with ``dataclasses.replace`` so a half-applied edit cannot exist.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from functools import cached_property

from .ipfilter import IpFilter, Rule, admin_default_filter

ADMIN_SITE = "admin"
# The Admin Site user whose key (the cluster key) members use to talk to each other.
CLUSTER_USER = "mft-cluster"
DEFAULT_FILE_SITE = "default"
ADMIN_PORT = 14983
ROLES = ("standalone", "primary", "secondary")
SITE_KINDS = ("admin", "file")
SYNC_INTERVAL_MIN_S = 5
SYNC_INTERVAL_MAX_S = 86400
MONITOR_PERIOD_MIN_S = 1
MONITOR_PERIOD_MAX_S = 3600
AGENT_PORT = 14984
LB_STATES = ("active", "drain", "maint")  # what a member's agent tells the load balancer
# A member's share of new sessions, in percent of the weight its HAProxy server line gives
# it (HAProxy takes 0-256 there; 0 would be a drain, which has its own state).
LB_WEIGHT_DEFAULT = 100
LB_WEIGHT_MIN, LB_WEIGHT_MAX = 1, 256
PROXY_MODES = ("off", "optional", "required")
MAX_LAG_MIN_S = 1
MAX_LAG_MAX_S = 86400
SERVICE_CHECK_MIN_S = 1
SERVICE_CHECK_MAX_S = 3600


@dataclass(frozen=True)
class SyncSettings:
    enabled: bool = True
    interval_s: int = 60


@dataclass(frozen=True)
class MonitorSettings:
    period_s: int = 5  # how often the primary checks every member


@dataclass(frozen=True)
class AutobanSettings:
    enabled: bool = True
    max_failures: int = 10
    window_s: int = 300
    ban_s: int = 3600


@dataclass(frozen=True)
class LoadBalancerSettings:
    # PROXY protocol on the file port, accepted only from these load-balancer addresses.
    proxy_protocol: str = "off"
    trusted: tuple[str, ...] = ()  # CIDRs
    # A member behind the primary's configuration for longer than this tells the load
    # balancer it is down.
    max_lag_s: int = 30
    # How often the primary checks each member's file port and agent the way HAProxy does
    # (a TCP connection each); its admin check, every monitor period, is separate. A
    # failed or changing service is checked again every second until it settles.
    check_period_s: int = 60

    @cached_property
    def _networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.trusted)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is one of the load balancers'."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 balancer seen on a dual-stack socket
        return any(ip in net for net in self._networks)


@dataclass(frozen=True)
class Site:
    name: str
    kind: str
    system: bool = False
    ip_default: str = "deny"
    rules: tuple[Rule, ...] = ()

    @cached_property
    def ipfilter(self) -> IpFilter:
        # Built once per Site value: the node consults it on every accepted connection.
        return IpFilter(self.rules, self.ip_default)


@dataclass(frozen=True)
class User:
    name: str
    site: str
    password_hash: str = ""
    authorized_keys: tuple[str, ...] = ()
    home: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    address: str
    admin_port: int = ADMIN_PORT
    role: str = "secondary"
    sync_enabled: bool = True
    host_key_fingerprint: str = ""
    lb_state: str = "active"  # active, drain (no new sessions) or maint
    lb_weight: int = LB_WEIGHT_DEFAULT  # percent; the agent sends it with "ready"


@dataclass(frozen=True)
class ClusterConfig:
    cluster_id: str = ""  # empty while the node is standalone
    epoch: int = 0
    version: int = 1
    sync: SyncSettings = field(default_factory=SyncSettings)
    autoban: AutobanSettings = field(default_factory=AutobanSettings)
    sites: tuple[Site, ...] = ()
    users: tuple[User, ...] = ()
    members: tuple[Member, ...] = ()
    file_host_keys: tuple[str, ...] = ()  # private keys (OpenSSH PEM), shared by every node
    # Node ids taken out of the cluster while unreachable: they still hold the cluster key,
    # so members refuse them by id if they ever act as members again.
    removed_members: tuple[str, ...] = ()
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    # Where users' homes live, the same folder on every node (a shared filesystem in
    # production); empty: each node's own `files/` folder in its home. A node may mount it
    # elsewhere (node.toml's storage_root).
    storage_root: str = ""
    load_balancer: LoadBalancerSettings = field(default_factory=LoadBalancerSettings)

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    def user(self, name: str) -> User | None:
        return next((u for u in self.users if u.name == name), None)

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    @property
    def primary(self) -> Member | None:
        return next((m for m in self.members if m.role == "primary"), None)

    def with_member(self, new: Member) -> "ClusterConfig":
        """Replace the member with the same id in place, or append a new one."""
        if self.member(new.id) is None:
            return replace(self, members=self.members + (new,))
        return replace(self, members=tuple(new if m.id == new.id else m for m in self.members))

    def with_user(self, new: User) -> "ClusterConfig":
        """Replace the user with the same name in place, or append a new one."""
        if self.user(new.name) is None:
            return replace(self, users=self.users + (new,))
        return replace(self, users=tuple(new if u.name == new.name else u for u in self.users))

    def with_site(self, new: Site) -> "ClusterConfig":
        return replace(self, sites=tuple(new if s.name == new.name else s for s in self.sites))

    def bumped(self) -> "ClusterConfig":
        """The next version of this document: every accepted change bumps it once."""
        return replace(self, version=self.version + 1)


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    name: str
    role: str = "standalone"
    admin_listen: str = f"0.0.0.0:{ADMIN_PORT}"
    admin_host_key: str = "keys/admin_host_ed25519"  # relative to the node home
    primary_key: str = ""  # public key of the primary this secondary trusts
    storage_root: str = ""  # overrides the cluster-wide storage root on this node
    file_listen: str = "0.0.0.0:2222"  # the SFTP/scp service for file users
    agent_listen: str = f"0.0.0.0:{AGENT_PORT}"  # HAProxy's agent-check


def default_sites() -> tuple[Site, ...]:
    admin = admin_default_filter()
    return (
        Site(ADMIN_SITE, "admin", system=True, ip_default=admin.default, rules=admin.rules),
        # A new file site serves everyone until the admin adds rules.
        Site(DEFAULT_FILE_SITE, "file", system=False, ip_default="allow"),
    )
