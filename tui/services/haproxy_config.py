"""An HAProxy configuration for a cluster's members, as text; and `haproxy -c` to check it.

Pure text generation from the member list `cluster.status` reports (no network, no UI):
SFTP clients reach the members through one TCP frontend; HAProxy checks each member's SSH
banner on its file port and asks the member's agent (agent-check) whether to send it new
sessions. Optionally an HTTPS frontend with sticky sessions (by source address or cookie).
`mft lb haproxy` and the console's HAProxy screen make it from the same answers to
`cluster.status` and `lb.get` (`for_cluster`, `notes`; `build` does it all and checks), and
write it whole (`save`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..model.listen import parse_listen
from ..model.config import LB_WEIGHT_MAX, PROXY_MODES

DEFAULT_FILE_PORT = 2222
DEFAULT_AGENT_PORT = 14984
BASE_WEIGHT = 100
BALANCES = ("roundrobin", "leastconn")
STICKY_MODES = ("source", "cookie")
CONFIG_MODE = 0o644  # a written configuration holds no secrets; HAProxy and its admins read it
COOKIE_NAME = "MFTSRV"
FRONTEND = "mft_sftp"
HTTP_FRONTEND = "mft_https"

# Characters HAProxy accepts in a proxy or server name; anything else becomes '_'.
_IDENT_BAD = re.compile(r"[^A-Za-z0-9_.:-]")
_HOSTNAME = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_TIMEOUT = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class Backend:
    """One member as the load balancer sees it. A port of None: the member did not report
    it (an older node); the default is assumed."""
    name: str
    address: str
    file_port: int | None = None
    agent_port: int | None = None
    lb_state: str | None = None  # active, drain or maint, as the cluster records it
    lb_weight: int | None = None  # percent, as the cluster records it


@dataclass(frozen=True)
class LbOptions:
    bind: str = "0.0.0.0:2222"  # where HAProxy listens for SFTP clients
    balance: str = "roundrobin"  # or leastconn
    proxy_protocol: bool = False  # the members expect a PROXY v2 header on their file port
    stats_socket: str = "/run/haproxy/mft.sock"
    http_sticky: str | None = None  # None (no HTTPS frontend), "source" or "cookie"
    http_bind: str = "0.0.0.0:443"
    http_port: int = 443  # the members' HTTPS port
    check_inter_ms: int = 1000
    rise: int = 2
    fall: int = 2
    agent_inter_ms: int = 1000
    timeout_connect: str = "5s"
    timeout_client: str = "1h"
    timeout_server: str = "1h"
    # Sessions at once; HAProxy needs about two descriptors per session, and refuses to
    # start when its file descriptor limit is lower than that (20,000 here is common).
    maxconn: int = 4000
    cluster_id: str = ""  # where the member list came from, for the header comment
    version: int | None = None  # the cluster configuration's version, likewise


@dataclass(frozen=True)
class CheckResult:
    ok: bool  # haproxy -c accepted the configuration
    output: str  # what it printed (errors, warnings), the temp file's path replaced
    available: bool  # False: haproxy is not installed, nothing was checked


@dataclass(frozen=True)
class HaproxyConfig:
    """A configuration for the cluster as it is now, and what `haproxy -c` said of it."""
    text: str
    ok: bool  # haproxy -c accepted it (False also when it was not checked)
    output: str
    available: bool  # False: haproxy is not installed where this ran, nothing was checked
    members: int
    proxy_protocol: str  # off, optional or required, as the cluster is set
    notes: tuple[str, ...] = ()  # warnings about the member list (see `notes`)


# -- from the cluster's answers ---------------------------------------------------------------

def _reported(value: Any, highest: int = 65535) -> int | None:
    """A port (or weight) the node reported; None when it did not (an older node) or sent
    no number from 1 to ``highest``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        return None
    return value


def backends_from(status: Mapping[str, Any]) -> list[Backend]:
    """The members of a `cluster.status` answer, in its order."""
    return [Backend(name=str(s.get("name", "")), address=str(s.get("address", "")),
                    file_port=_reported(s.get("file_port")),
                    agent_port=_reported(s.get("agent_port")),
                    lb_state=s.get("lb_state") if isinstance(s.get("lb_state"), str) else None,
                    lb_weight=_reported(s.get("lb_weight"), LB_WEIGHT_MAX))
            for s in status.get("servers", [])]


def proxy_mode(lb: Mapping[str, Any] | None) -> str:
    """The PROXY protocol mode of an `lb.get` answer; None (a node without lb.get) is off.
    Raises ValueError for a mode this console does not know."""
    mode = "off" if lb is None else lb.get("proxy_protocol", "off")
    if mode not in PROXY_MODES:
        raise ValueError(f"the node reports an unknown PROXY protocol mode {_comment(mode)!r}")
    return str(mode)


def for_cluster(status: Mapping[str, Any], lb: Mapping[str, Any] | None,
                options: LbOptions) -> tuple[list[Backend], LbOptions]:
    """The members and options to render from the answers to `cluster.status` and `lb.get`
    (None: the node has no lb.get). Raises ValueError like `proxy_mode`."""
    cluster = status.get("cluster") or {}
    options = replace(options, proxy_protocol=proxy_mode(lb) != "off",
                      cluster_id=str(cluster.get("cluster_id") or ""),
                      version=cluster.get("version"))
    return backends_from(status), options


def notes(status: Mapping[str, Any], servers: Sequence[Backend]) -> list[str]:
    """What the reader of the configuration should know about the member list."""
    found = []
    error = (status.get("cluster") or {}).get("primary_error")
    if error:
        found.append(f"the primary could not be asked ({error}); the member list is this "
                     "node's own")
    for s in servers:
        if s.file_port is None or s.agent_port is None:
            found.append(f"{s.name} did not report its file and agent ports; the defaults "
                         "are assumed (see the comments in the configuration)")
    return found


def build(status: Mapping[str, Any], lb: Mapping[str, Any] | None,
          options: LbOptions, haproxy: str = "haproxy") -> HaproxyConfig:
    """Render and check the configuration for the cluster's answers (blocking: `haproxy -c`
    runs). Raises ValueError when no configuration can be written for them."""
    servers, options = for_cluster(status, lb, options)
    text = render(servers, options)
    result = check(text, haproxy)
    return HaproxyConfig(text, result.ok, result.output, result.available, len(servers),
                         proxy_mode(lb), tuple(notes(status, servers)))


def save(path: str | os.PathLike[str], text: str) -> Path:
    """Replace the file at ``path`` (a leading ~ is the user's home) with ``text`` whole;
    returns the absolute path written. Raises OSError."""
    target = Path(path).expanduser().absolute()
    atomic_write(target, text.encode("utf-8"), mode=CONFIG_MODE)
    return target


# -- validation -------------------------------------------------------------------------------

def _port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{what} {value!r} is not a port (1 to 65535)")
    return value


def _host_ok(host: str) -> bool:
    if "%" in host:  # an IPv6 zone may hold any text, a line break and a directive included
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def parse_bind(text: str, what: str = "bind address") -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or '*:PORT' (every address), as HAProxy's bind line takes
    it. The same forms as the node's own listen addresses, with the port required."""
    text = text.strip()
    if text.count(":") > 1 and not text.startswith("["):
        raise ValueError(f"{what} {text!r}: write an IPv6 address in brackets, [ADDR]:PORT")
    if text.startswith(":"):
        raise ValueError(f"{what} {text!r} has no host (use *:PORT or 0.0.0.0:PORT for every "
                         "address)")
    try:
        host, port = parse_listen(text)
    except ValueError as exc:
        said = str(exc)  # names the text itself, or only the part that is wrong
        raise ValueError(f"{what} {said}" if said.startswith(repr(text))
                         else f"{what} {text!r}: {said}") from None
    if host != "*" and not _host_ok(host):
        raise ValueError(f"{what} {text!r}: {host!r} is not an IP address or host name")
    return host, port


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server_address(server: Backend) -> str:
    host = server.address.strip() if isinstance(server.address, str) else ""
    if not host or not _host_ok(host):
        raise ValueError(f"member {_comment(server.name)!r} has the address "
                         f"{_comment(server.address)!r}, not an IP address or host name")
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        unspecified = False
    if unspecified:
        raise ValueError(f"member {_comment(server.name)!r} reports the address {host} "
                         "(it listens on every address), which HAProxy cannot connect to: "
                         "register it by an address the load balancer can reach")
    return host


def sanitize_name(name: str) -> str:
    """A member name as an HAProxy server name (and cookie value): letters, digits and
    '_', '.', '-', ':'; anything else becomes '_'."""
    cleaned = _IDENT_BAD.sub("_", name.strip()) if isinstance(name, str) else ""
    return cleaned or "member"


def _comment(text: object) -> str:
    """Text from the cluster inside a comment: one line, printable ASCII only, so a name
    cannot end the comment and add configuration lines."""
    return _NOT_PRINTABLE.sub("?", str(text))


def check_options(options: LbOptions) -> None:
    """Raise ValueError naming the first option HAProxy could not take."""
    parse_bind(options.bind)
    if options.http_sticky is not None:
        parse_bind(options.http_bind, "http bind address")
    if options.balance not in BALANCES:
        raise ValueError(f"balance {options.balance!r} is not one of {', '.join(BALANCES)}")
    if options.http_sticky is not None and options.http_sticky not in STICKY_MODES:
        raise ValueError(f"http_sticky {options.http_sticky!r} is not one of "
                         f"{', '.join(STICKY_MODES)}")
    for what, value, lowest in (("check_inter_ms", options.check_inter_ms, 1),
                                ("agent_inter_ms", options.agent_inter_ms, 1),
                                ("rise", options.rise, 1), ("fall", options.fall, 1),
                                ("maxconn", options.maxconn, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"{what} {value!r} must be a whole number of at least {lowest}")
    for what, value in (("timeout_connect", options.timeout_connect),
                        ("timeout_client", options.timeout_client),
                        ("timeout_server", options.timeout_server)):
        if not _TIMEOUT.match(str(value)):
            raise ValueError(f"{what} {value!r} is not an HAProxy time (like 5s, 1h, 500ms)")
    socket = options.stats_socket
    if (not socket.startswith("/") or re.search(r"[\s#\\'\"]", socket)
            or _NOT_PRINTABLE.search(socket)):
        raise ValueError(f"stats socket {socket!r} must be an absolute path without spaces, "
                         "quotes or '#'")
    _port(options.http_port, "http_port")


# -- rendering --------------------------------------------------------------------------------

def _unique_names(servers: Sequence[Backend]) -> list[str]:
    names: list[str] = []
    taken: set[str] = set()
    for server in servers:
        base = sanitize_name(server.name)
        name, n = base, 2
        while name.lower() in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name.lower())
        names.append(name)
    return names


def _header(options: LbOptions) -> list[str]:
    if options.cluster_id:
        source = f"the mft cluster {_comment(options.cluster_id)}"
    else:
        source = "a standalone mft node"
    if options.version is not None:
        source += f", configuration version {_comment(options.version)}"
    lines = [
        f"# HAProxy configuration for {source}.",
        "# Generated by `mft lb haproxy` from the member list: run it again when members",
        "# are added or removed (edits made here are lost then).",
        "# SFTP clients connect to the frontend; HAProxy checks each member's SSH banner on",
        "# its file port and asks the member's agent (agent-check) whether to send it new",
        "# sessions: it answers drain or maint when the member should get none.",
    ]
    if options.proxy_protocol:
        lines += ["# The members expect a PROXY v2 header on their file port (send-proxy-v2):",
                  "# each must trust this load balancer's address (`mft lb proxy-protocol`)."]
    return lines


def _server_lines(servers: Sequence[Backend], names: list[str], options: LbOptions,
                  port_of: str) -> list[str]:
    lines: list[str] = []
    for server, name in zip(servers, names):
        host = _server_address(server)
        notes: list[str] = []
        if name != server.name:
            notes.append(f"member name {_comment(server.name)!r}")
        if port_of == "file":
            if server.file_port is None:
                notes.append(f"file port not reported, assumed {DEFAULT_FILE_PORT}")
            port = _port(DEFAULT_FILE_PORT if server.file_port is None else server.file_port,
                         f"member {name}: file_port")
        else:
            port = options.http_port
        if server.agent_port is None:
            notes.append(f"agent port not reported, assumed {DEFAULT_AGENT_PORT}")
        agent = _port(DEFAULT_AGENT_PORT if server.agent_port is None else server.agent_port,
                      f"member {name}: agent_port")
        if server.lb_state and server.lb_state != "active":
            notes.append(f"lb state {_comment(server.lb_state)} (its agent tells HAProxy)")
        if server.lb_weight not in (None, BASE_WEIGHT):
            notes.append(f"weight {server.lb_weight}% (its agent tells HAProxy)")
        if notes:
            lines.append(f"    # {name}: " + "; ".join(notes))
        # weight 100: the percentage a member's agent sends (mft servers weight) is then
        # its weight as is, and can go above the default as well as below it.
        words = ["server", name, _address(host, port), "weight", str(BASE_WEIGHT),
                 "check", "inter", f"{options.check_inter_ms}ms",
                 "rise", str(options.rise), "fall", str(options.fall),
                 "agent-check", "agent-port", str(agent),
                 "agent-inter", f"{options.agent_inter_ms}ms"]
        if port_of == "file" and options.proxy_protocol:
            words += ["send-proxy-v2", "check-send-proxy"]
        if port_of == "http" and options.http_sticky == "cookie":
            words += ["cookie", name, "ssl", "verify", "required", "ca-file", "@system-ca"]
        lines.append("    " + " ".join(words))
    return lines


def _http_sections(servers: Sequence[Backend], names: list[str], options: LbOptions) -> list[str]:
    host, port = parse_bind(options.http_bind, "http bind address")
    lines = [""]
    if options.http_sticky == "source":
        lines += [
            "# HTTPS, sticky by client address: TLS passes through to the members untouched",
            "# (mode tcp); a client address stays with one member for 30 minutes after its",
            "# last connection.",
            f"frontend {HTTP_FRONTEND}",
            f"    bind {_address(host, port)}",
            "    mode tcp",
            f"    default_backend {HTTP_FRONTEND}",
            "",
            f"backend {HTTP_FRONTEND}",
            "    mode tcp",
            f"    balance {options.balance}",
            # type ipv6 also holds IPv4 clients (mapped); type ip holds IPv4 only.
            f"    stick-table type {'ipv6' if ':' in host else 'ip'} size 100k expire 30m",
            "    stick on src",
        ]
    else:
        lines += [
            f"# HTTPS, sticky by cookie ({COOKIE_NAME}): inserting a cookie needs HTTP, so TLS",
            "# must terminate on HAProxy. As generated, the bind below takes plain HTTP: add",
            "# `ssl crt /etc/haproxy/mft.pem` (certificate and key, one file) to it.",
            "# HAProxy speaks TLS to the members' HTTPS port and verifies their certificates",
            "# against the system CAs: point ca-file at the cluster's own CA if it has one.",
            f"frontend {HTTP_FRONTEND}",
            f"    bind {_address(host, port)}",
            "    mode http",
            "    option forwardfor",
            "    timeout http-request 10s",
            f"    default_backend {HTTP_FRONTEND}",
            "",
            f"backend {HTTP_FRONTEND}",
            "    mode http",
            f"    balance {options.balance}",
            f"    cookie {COOKIE_NAME} insert indirect nocache",
        ]
    return lines + _server_lines(servers, names, options, "http")


def render(servers: Sequence[Backend], options: LbOptions) -> str:
    """The configuration for ``servers`` (in their order). Raises ValueError, naming the
    problem, for options or member data HAProxy could not take."""
    check_options(options)
    host, port = parse_bind(options.bind)
    if not servers:
        raise ValueError("no members to balance")
    names = _unique_names(servers)
    lines = _header(options) + [
        "",
        "global",
        f"    stats socket {options.stats_socket} mode 600 level admin",
        f"    maxconn {options.maxconn}",
        "",
        "defaults",
        "    mode tcp",
        f"    timeout connect {options.timeout_connect}",
        f"    timeout client {options.timeout_client}",
        f"    timeout server {options.timeout_server}",
        # A member that died moments ago (not yet marked down): try again, on another.
        "    retries 2",
        "    option redispatch 1",
        "",
        f"frontend {FRONTEND}",
        f"    bind {_address(host, port)}",
        "    mode tcp",
        f"    default_backend {FRONTEND}",
        "",
        f"backend {FRONTEND}",
        f"    balance {options.balance}",
        "    option tcp-check",
        "    tcp-check expect rstring ^SSH-2.0",
    ]
    lines += _server_lines(servers, names, options, "file")
    if options.http_sticky is not None:
        lines += _http_sections(servers, names, options)
    return "\n".join(lines) + "\n"


# -- checking ---------------------------------------------------------------------------------

def check(text: str, haproxy: str = "haproxy", timeout: float = 10) -> CheckResult:
    """`haproxy -c` on ``text``. Never raises for a missing haproxy: ``available`` is
    False then."""
    path = shutil.which(haproxy)
    if path is None:
        return CheckResult(False, f"{haproxy} is not installed", False)
    with tempfile.TemporaryDirectory(prefix="mft-haproxy-") as directory:
        file = os.path.join(directory, "haproxy.cfg")
        with open(file, "w", encoding="utf-8") as out:
            out.write(text)
        try:
            done = subprocess.run([path, "-c", "-f", file], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL,
                                  errors="replace")
        except subprocess.TimeoutExpired:
            return CheckResult(False, f"{haproxy} -c did not finish within {timeout:g} s",
                               True)
        except OSError as exc:
            return CheckResult(False, f"cannot run {path}: {exc.strerror or exc}", False)
    output = (done.stdout + done.stderr).replace(file, "haproxy.cfg").strip()
    return CheckResult(done.returncode == 0, output, True)
