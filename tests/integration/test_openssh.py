"""The admin port as admins reach it with the stock OpenSSH `ssh` and `sftp` clients.

Every test runs a real `mft serve` process on loopback and drives the real clients:
JSON-RPC over `ssh -s mft-admin`, the read-only `sftp` view, the Admin Site IP filter
at TCP accept, the per-connection limit on failed logins, key logins, and the refusal
of everything an SSH server usually offers besides the two subsystems.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import select
import shlex
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from tests.support import (
    ADMIN_PASSWORD,
    Node,
    make_home,
    require_tool,
    run_mft,
    start_node_process,
    stop_node_process,
)
from tui.protocol.rpc import PARSE_ERROR, PROTOCOL_VERSION

pytestmark = pytest.mark.openssh

CLIENT_TIMEOUT_S = 30
WRONG_PASSWORD = "Wrong-Tr0mbone-Password-4711"


# --------------------------------------------------------------------------- helpers

def askpass(tmp_path: Path, password: str, name: str = "askpass") -> Path:
    """A script OpenSSH runs instead of prompting on a terminal; it prints the password."""
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(password)}\n")
    script.chmod(0o700)
    return script


def client_env(tmp_path: Path, password: str = ADMIN_PASSWORD,
               askpass_script: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "SSH_AUTH_SOCK") and not k.startswith("MFT_")}
    env["SSH_ASKPASS"] = str(askpass_script or askpass(tmp_path, password))
    env["SSH_ASKPASS_REQUIRE"] = "force"
    return env


def common_options(tmp_path: Path) -> list[str]:
    return ["-F", "/dev/null",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={tmp_path / 'openssh_known_hosts'}",
            "-o", "ConnectTimeout=5",
            "-o", "IdentityAgent=none",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=2"]


PASSWORD_ONLY = ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]


def run_ssh(tmp_path: Path, node: Node, *args: str, source: str | None = None,
            user: str = "admin", password: str = ADMIN_PASSWORD, auth: list[str] | None = None,
            input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = CLIENT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`ssh [opts] -p PORT user@HOST ARGS...`; ARGS decide what is asked for (-s, a command)."""
    ssh = require_tool("ssh")
    cmd = [ssh, *common_options(tmp_path), *(PASSWORD_ONLY if auth is None else auth),
           "-p", str(node.port)]
    if source:
        cmd += ["-b", source]
    cmd += [f"{user}@{node.host}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          env=env or client_env(tmp_path, password))


def run_sftp(tmp_path: Path, node: Node, *commands: str, source: str | None = None,
             password: str = ADMIN_PASSWORD, auth: list[str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`sftp -b BATCH`: without a '-' prefix, the first failing command ends the batch
    with a non-zero exit status."""
    sftp = require_tool("sftp")
    require_tool("ssh")  # sftp runs ssh underneath
    batch = tmp_path / f"batch-{time.monotonic_ns()}.txt"
    batch.write_text("".join(c + "\n" for c in commands))
    workdir = cwd or tmp_path / "sftp-cwd"
    workdir.mkdir(exist_ok=True)
    cmd = [sftp, *common_options(tmp_path), *(PASSWORD_ONLY if auth is None else auth),
           "-o", "BatchMode=no", "-P", str(node.port), "-b", str(batch)]
    if source:
        cmd += ["-o", f"BindAddress={source}"]
    cmd.append(f"admin@{node.host}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, cwd=workdir,
                          env=client_env(tmp_path, password))


def rpc_lines(*requests: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in requests)


def node_info_request(request_id: int) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "node.info"}


def answers(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_node_info(result: subprocess.CompletedProcess[str], node: Node) -> dict:
    assert result.returncode == 0, result.stderr
    replies = answers(result.stdout)
    assert len(replies) == 1, result.stdout
    assert replies[0]["id"] == 1 and "error" not in replies[0], replies[0]
    info = replies[0]["result"]
    assert info["name"] == tomllib.loads((node.home / "node.toml").read_text())["name"]
    return info


def ls_names(stdout: str) -> set[str]:
    """Names from `ls -1a` output in an sftp batch (echoed commands start with 'sftp>')."""
    return {posixpath.basename(line.strip()) for line in stdout.splitlines()
            if line.strip() and not line.startswith("sftp>")}


def home_snapshot(home: Path) -> dict[str, str]:
    """Every file and folder under the home with a content hash; the node's own log is
    outside the configuration and left out."""
    snap: dict[str, str] = {}
    for path in sorted(home.rglob("*")):
        rel = path.relative_to(home).as_posix()
        if rel == "serve.log":
            continue
        snap[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return snap


def log_lines(node: Node, pattern: str) -> list[str]:
    assert node.log is not None
    return [line for line in node.log.read_text().splitlines() if re.search(pattern, line)]


def wait_for_log(node: Node, pattern: str, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = log_lines(node, pattern)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def mft(tmp_path: Path, node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    """The `mft` CLI against the node, logged in with the admin password."""
    return run_mft(tmp_path, *args, "--connect", node.connect, "--accept-new",
                   MFT_PASSWORD=node.password)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line from a child's stdout, or whatever arrived before the deadline / EOF."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def finish(proc: subprocess.Popen[bytes], timeout: float = 5) -> tuple[int, str]:
    """End a background client we started (it may already have ended) and collect stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=timeout)
    return proc.returncode, (err or b"").decode(errors="replace")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def served(tmp_path: Path) -> Iterator[Node]:
    """`mft serve` on 127.0.0.3 as its own process."""
    require_tool("ssh")
    running = start_node_process(tmp_path)
    yield running
    stop_node_process(running)


# --------------------------------------------------------------------------- 1. mft-admin

def test_node_info_over_the_mft_admin_subsystem(served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-s", "mft-admin",
                     input=rpc_lines(node_info_request(1)))
    info = assert_node_info(result, served)
    node_toml = tomllib.loads((served.home / "node.toml").read_text())
    assert info["protocol"] == PROTOCOL_VERSION == 1
    assert info["name"] == "p1" and info["node_id"] == node_toml["node_id"]
    assert info["role"] == "standalone"
    # The host key OpenSSH pinned is the one the node says it has.
    pinned = subprocess.run([require_tool("ssh-keygen"), "-l", "-f",
                             str(tmp_path / "openssh_known_hosts")],
                            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    assert pinned.returncode == 0, pinned.stderr
    assert f"[{served.host}]:{served.port}" in pinned.stdout
    assert info["admin_host_key_fingerprint"] in pinned.stdout


def test_several_requests_and_a_malformed_line_share_one_session(
        served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-s", "mft-admin", input=rpc_lines(
        node_info_request(1),
        '{"jsonrpc": "2.0", "id": 2, "method": ',  # cut short: not JSON
        node_info_request(3),
    ))
    assert result.returncode == 0, result.stderr
    replies = answers(result.stdout)
    assert len(replies) == 3, result.stdout
    by_id = {r["id"]: r for r in replies}
    assert set(by_id) == {1, None, 3}
    assert by_id[None]["error"]["code"] == PARSE_ERROR == -32700
    assert by_id[1]["result"]["name"] == by_id[3]["result"]["name"] == "p1"
    assert by_id[1]["result"]["protocol"] == by_id[3]["result"]["protocol"] == 1
    # One SSH connection carried all three: the node logged a single login.
    assert len(log_lines(served, r"admin admin logged in")) == 1


# --------------------------------------------------------------------------- 2. sftp view

def test_sftp_view_lists_and_serves_the_configuration(served: Node, tmp_path: Path) -> None:
    assert not (served.home / "backups").exists()
    listing = run_sftp(tmp_path, served, "ls -1a /")
    assert listing.returncode == 0, listing.stderr
    names = ls_names(listing.stdout) - {".", ".."}
    assert names == {"node.toml", "cluster.toml"}, listing.stdout

    # A change made through the CLI keeps the previous generation under backups/.
    changed = mft(tmp_path, served, "ipfilter", "add", "allow", "203.0.113.7")
    assert changed.returncode == 0, changed.stderr
    backup = served.home / "backups" / "cluster.0.1.toml"
    assert backup.is_file()

    download = tmp_path / "download"
    download.mkdir()
    listing = run_sftp(tmp_path, served, "ls -1a /", "ls -1 backups",
                       "get cluster.toml", "get node.toml",
                       "get backups/cluster.0.1.toml", cwd=download)
    assert listing.returncode == 0, listing.stderr
    names = ls_names(listing.stdout)
    assert {"node.toml", "cluster.toml", "backups", "cluster.0.1.toml"} <= names
    assert "keys" not in names and "admin_host_ed25519" not in names
    assert "serve.log" not in names

    # node.toml holds no secret and arrives as stored; cluster.toml and its backups arrive
    # with every password hash and private host key replaced, the rest unchanged.
    assert (download / "node.toml").read_bytes() == (served.home / "node.toml").read_bytes()
    for name, on_disk in (("cluster.toml", served.home / "cluster.toml"),
                          ("cluster.0.1.toml", backup)):
        got = (download / name).read_bytes()
        assert b"scrypt$" not in got and b"PRIVATE KEY" not in got, name
        assert tomllib.loads(got.decode()) == redacted(tomllib.loads(on_disk.read_text())), name
    assert b"203.0.113.7" in (download / "cluster.toml").read_bytes()
    assert b"203.0.113.7" not in (download / "cluster.0.1.toml").read_bytes()
    # The sizes the view lists are those of what it serves.
    sizes = run_sftp(tmp_path, served, "ls -ln cluster.toml node.toml")
    assert sizes.returncode == 0, sizes.stderr
    for line in sizes.stdout.splitlines():
        if line.startswith("sftp>"):
            continue
        fields = line.split()
        name = posixpath.basename(fields[-1])
        assert int(fields[4]) == len((download / name).read_bytes()), line


def redacted(document: dict) -> dict:
    """A cluster document as the view promises to serve it."""
    for user in document["users"]:
        if user.get("password_hash"):
            user["password_hash"] = "<redacted>"
    document["file_service"]["host_keys"] = ["<redacted>"] * len(
        document["file_service"]["host_keys"])
    return document


WRITE_COMMANDS = (
    "put {local}",
    "put {local} cluster.toml",
    "put {local} node.toml",
    "put {local} backups/cluster.9.9.toml",
    "rm cluster.toml",
    "rm backups/cluster.0.1.toml",
    "mkdir newdir",
    "mkdir backups/newdir",
    "rmdir backups",
    "rename cluster.toml moved.toml",
    "rename node.toml backups/node.toml",
    "chmod 644 cluster.toml",
    "chmod 700 backups",
    "ln -s cluster.toml link.toml",
    "ln cluster.toml hard.toml",
)


def test_sftp_view_refuses_every_change(served: Node, tmp_path: Path) -> None:
    changed = mft(tmp_path, served, "ipfilter", "add", "allow", "203.0.113.8")
    assert changed.returncode == 0, changed.stderr  # so that backups/ exists
    local = tmp_path / "upload.toml"
    local.write_text('cluster_id = "evil"\n')
    before = home_snapshot(served.home)
    assert "backups/cluster.0.1.toml" in before
    accepted = []
    for command in WRITE_COMMANDS:  # one batch each: the first failure ends a batch
        result = run_sftp(tmp_path, served, command.format(local=local))
        if result.returncode == 0 or "Permission denied" not in result.stderr:
            accepted.append((command, result.returncode, result.stderr))
        assert home_snapshot(served.home) == before, f"{command!r} changed the home"
    assert accepted == []
    # The node still reads back what it had: nothing was replaced underneath it.
    check = run_ssh(tmp_path, served, "-s", "mft-admin", input=rpc_lines(node_info_request(1)))
    assert assert_node_info(check, served)["version"] == 2


def test_sftp_view_hides_the_keys(served: Node, tmp_path: Path) -> None:
    key_file = served.home / "keys" / "admin_host_ed25519"
    assert key_file.is_file()
    download = tmp_path / "download"
    download.mkdir()
    for command in ("get keys/admin_host_ed25519", "get /keys/admin_host_ed25519",
                    "get ../keys/admin_host_ed25519", "get backups/../keys/admin_host_ed25519",
                    "get cluster.toml/../keys/admin_host_ed25519", "ls keys", "cd keys",
                    "get serve.log"):
        result = run_sftp(tmp_path, served, command, cwd=download)
        assert result.returncode != 0, (command, result.stdout, result.stderr)
        assert re.search(r"not found|No such file|not part of the configuration view",
                         result.stderr), (command, result.stderr)
        assert "Permission denied" not in result.stderr  # hidden, not merely protected
    assert list(download.iterdir()) == []
    key_text = key_file.read_bytes()
    for path in tmp_path.rglob("*"):
        if path.is_file() and served.home not in path.parents:
            assert key_text not in path.read_bytes(), path


def test_sftp_view_hides_set_aside_folders(served: Node, tmp_path: Path) -> None:
    # What `mft init --force` leaves behind: an older home, keys included.
    aside = served.home / "backups" / "replaced-1"
    (aside / "keys").mkdir(parents=True)
    (aside / "cluster.toml").write_bytes((served.home / "cluster.toml").read_bytes())
    (aside / "keys" / "admin_host_ed25519").write_bytes(
        (served.home / "keys" / "admin_host_ed25519").read_bytes())
    listing = run_sftp(tmp_path, served, "ls -1a backups")
    assert listing.returncode == 0, listing.stderr
    assert "replaced-1" not in listing.stdout
    download = tmp_path / "download"
    download.mkdir()
    for command in ("get backups/replaced-1/cluster.toml", "ls backups/replaced-1",
                    "get backups/replaced-1/keys/admin_host_ed25519"):
        result = run_sftp(tmp_path, served, command, cwd=download)
        assert result.returncode != 0, (command, result.stdout)
    assert list(download.iterdir()) == []


def test_sftp_view_does_not_follow_links_out_of_the_home(served: Node, tmp_path: Path) -> None:
    """A link inside the home that resolves outside it is a path outside the home."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.toml").write_text('marker = "read-from-outside-the-home"\n')
    backups = served.home / "backups"
    backups.mkdir()
    (backups / "cluster.0.99.toml").symlink_to(outside / "elsewhere.toml")
    download = tmp_path / "download"
    download.mkdir()
    result = run_sftp(tmp_path, served, "get backups/cluster.0.99.toml", cwd=download)
    fetched = download / "cluster.0.99.toml"
    leaked = fetched.exists() and b"read-from-outside-the-home" in fetched.read_bytes()
    assert not leaked, ("the sftp view served a file outside the node home through a "
                        "symlink in backups/ (resolved paths are not checked)")
    assert result.returncode != 0


def test_scp_fetches_through_the_sftp_view_and_reports_success(
        served: Node, tmp_path: Path) -> None:
    """OpenSSH's scp speaks SFTP by default (since 9.0): it is one of "any SFTP client"."""
    scp = require_tool("scp")
    download = tmp_path / "download"
    download.mkdir()
    result = subprocess.run(
        [scp, *common_options(tmp_path), *PASSWORD_ONLY, "-P", str(served.port),
         f"admin@{served.host}:cluster.toml", str(download)],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, stdin=subprocess.DEVNULL,
        env=client_env(tmp_path))
    fetched = download / "cluster.toml"
    assert fetched.exists(), result.stderr
    assert tomllib.loads(fetched.read_text()) == redacted(
        tomllib.loads((served.home / "cluster.toml").read_text()))
    # The file arrived, so the exit status must say so; a script checks nothing else.
    assert result.returncode == 0, (
        f"scp exited {result.returncode} ({result.stderr.strip()!r}) after a complete "
        "download: the sftp channel closes without an exit status")


def test_legacy_scp_is_refused(served: Node, tmp_path: Path) -> None:
    scp = require_tool("scp")
    local = tmp_path / "upload.toml"
    local.write_text("x = 1\n")
    before = home_snapshot(served.home)
    for args in ([f"admin@{served.host}:cluster.toml", str(tmp_path / "fetched.toml")],
                 [str(local), f"admin@{served.host}:cluster.toml"]):
        result = subprocess.run(
            [scp, "-O", *common_options(tmp_path), *PASSWORD_ONLY, "-P", str(served.port),
             *args], capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
            stdin=subprocess.DEVNULL, env=client_env(tmp_path))
        assert result.returncode != 0
        assert "is not offered here" in result.stderr, result.stderr
    assert not (tmp_path / "fetched.toml").exists()
    assert home_snapshot(served.home) == before


# --------------------------------------------------------------------------- 3. IP filter

def test_ip_filter_refuses_a_denied_address_with_a_readable_reason(
        served: Node, tmp_path: Path) -> None:
    request = rpc_lines(node_info_request(1))
    before = run_ssh(tmp_path, served, "-s", "mft-admin", source="127.0.0.9", input=request)
    assert_node_info(before, served)

    added = mft(tmp_path, served, "ipfilter", "add", "deny", "127.0.0.9", "--position", "1")
    assert added.returncode == 0, added.stderr
    assert re.search(r"^1\s+deny\s+127\.0\.0\.9", added.stdout, re.M), added.stdout

    refused = run_ssh(tmp_path, served, "-s", "mft-admin", source="127.0.0.9", input=request)
    assert refused.returncode == 255, refused.stderr
    assert refused.stdout == ""
    assert "Received disconnect" in refused.stderr, refused.stderr
    assert "127.0.0.9" in refused.stderr and "Admin Site IP filter" in refused.stderr
    # The reason names the rule, so "IP filter" can be told apart from "firewall".
    assert "rule 1" in refused.stderr, refused.stderr
    assert wait_for_log(served, r"refused 127\.0\.0\.9")
    # The filter decided before authentication: still only the one login from before.
    logins_from_9 = r"(logged in|failed \w+ login).* from 127\.0\.0\.9( |$)"
    assert len(log_lines(served, logins_from_9)) == 1

    sftp_refused = run_sftp(tmp_path, served, "ls", source="127.0.0.9")
    assert sftp_refused.returncode != 0
    assert "Admin Site IP filter" in sftp_refused.stderr, sftp_refused.stderr

    neighbour = run_ssh(tmp_path, served, "-s", "mft-admin", source="127.0.0.10", input=request)
    assert_node_info(neighbour, served)

    removed = mft(tmp_path, served, "ipfilter", "remove", "1")
    assert removed.returncode == 0, removed.stderr
    assert "127.0.0.9" not in removed.stdout
    again = run_ssh(tmp_path, served, "-s", "mft-admin", source="127.0.0.9", input=request)
    assert_node_info(again, served)
    assert len(log_lines(served, logins_from_9)) == 2


# --------------------------------------------------------------------------- 4-5. passwords

def test_wrong_password_is_refused_and_the_right_one_works(served: Node, tmp_path: Path) -> None:
    wrong = run_ssh(tmp_path, served, "-o", "NumberOfPasswordPrompts=1", "-s", "mft-admin",
                    source="127.0.0.20", password=WRONG_PASSWORD,
                    input=rpc_lines(node_info_request(1)))
    assert wrong.returncode == 255
    assert "Permission denied" in wrong.stderr, wrong.stderr
    assert wrong.stdout == ""
    assert len(wait_for_log(served, r"failed password login for 'admin' from 127\.0\.0\.20 ")) == 1

    right = run_ssh(tmp_path, served, "-o", "NumberOfPasswordPrompts=1", "-s", "mft-admin",
                    source="127.0.0.20", input=rpc_lines(node_info_request(1)))
    assert_node_info(right, served)
    assert log_lines(served, r"admin admin logged in from 127\.0\.0\.20$")


def test_unknown_user_is_refused_like_a_wrong_password(served: Node, tmp_path: Path) -> None:
    def refusal(user: str, password: str) -> str:
        result = run_ssh(tmp_path, served, "-o", "NumberOfPasswordPrompts=1", "-s",
                         "mft-admin", user=user, password=password, source="127.0.0.22",
                         input=rpc_lines(node_info_request(1)))
        assert result.returncode == 255 and result.stdout == ""
        line = [x for x in result.stderr.splitlines() if "Permission denied" in x]
        assert len(line) == 1, result.stderr
        return line[0].replace(f"{user}@", "USER@")

    # Nothing in the answer tells an unknown name from a known one with a wrong password.
    assert refusal("root", ADMIN_PASSWORD) == refusal("admin", WRONG_PASSWORD)
    assert wait_for_log(served, r"failed password login for 'root' from 127\.0\.0\.22 ")


def test_a_connection_gets_six_password_attempts_then_is_disconnected(
        served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-o", "NumberOfPasswordPrompts=10", "-s", "mft-admin",
                     source="127.0.0.21", password=WRONG_PASSWORD,
                     input=rpc_lines(node_info_request(1)))
    assert result.returncode == 255
    assert "Received disconnect" in result.stderr, result.stderr
    assert re.search(r":14: too many authentication failures \(6\)", result.stderr), result.stderr
    # Five "try again" replies; the sixth failure is answered by the disconnect itself.
    assert result.stderr.count("Permission denied, please try again.") == 5, result.stderr
    assert wait_for_log(served, r"failed password login for 'admin' from 127\.0\.0\.21 ")
    time.sleep(0.2)  # let any further (wrong) attempt reach the log too
    failures = log_lines(served, r"failed password login for 'admin' from 127\.0\.0\.21 ")
    assert len(failures) == 6, failures
    assert failures[-1].endswith("(6/6)")
    # The limit is per connection: a new connection with the right password gets in.
    ok = run_ssh(tmp_path, served, "-s", "mft-admin", source="127.0.0.21",
                 input=rpc_lines(node_info_request(1)))
    assert_node_info(ok, served)


def test_keyboard_interactive_and_password_share_the_six_attempts(
        served: Node, tmp_path: Path) -> None:
    # 4 keyboard-interactive tries, then password tries: six in all, whatever the method.
    result = run_ssh(tmp_path, served, "-o", "NumberOfPasswordPrompts=4", "-s", "mft-admin",
                     source="127.0.0.23", password=WRONG_PASSWORD,
                     auth=["-o", "PreferredAuthentications=keyboard-interactive,password",
                           "-o", "PubkeyAuthentication=no"],
                     input=rpc_lines(node_info_request(1)))
    assert result.returncode == 255
    assert "too many authentication failures (6)" in result.stderr, result.stderr
    time.sleep(0.2)
    assert len(log_lines(served, r"failed \w+ login for 'admin' from 127\.0\.0\.23 ")) == 6


# --------------------------------------------------------------------------- 6. key login

def keygen(path: Path) -> str:
    result = subprocess.run([require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "",
                             "-C", f"test-{path.name}", "-f", str(path)],
                            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Node, Path, Path]]:
    """A node whose admin user has one authorized key (written before the node starts)."""
    require_tool("ssh")
    keys = tmp_path / "client-keys"
    keys.mkdir(mode=0o700)
    good, other = keys / "good", keys / "other"
    public = keygen(good)
    keygen(other)
    home = make_home(tmp_path / "keyed", "k1")
    cluster_file = home / "cluster.toml"
    document = tomllib.loads(cluster_file.read_text())
    (admin,) = [u for u in document["users"] if u["name"] == "admin"]
    admin["authorized_keys"] = [public]
    cluster_file.write_bytes(tomli_w.dumps(document).encode())
    running = start_node_process(tmp_path, "k1", home=home)
    yield running, good, other
    stop_node_process(running)


def test_key_login_needs_no_password(keyed: tuple[Node, Path, Path], tmp_path: Path) -> None:
    node, good, _ = keyed
    marker = tmp_path / "askpass-was-run"
    script = tmp_path / "askpass-marker.sh"
    script.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\nexit 1\n")
    script.chmod(0o700)
    key_auth = ["-i", str(good), "-o", "IdentitiesOnly=yes",
                "-o", "PreferredAuthentications=publickey"]
    result = run_ssh(tmp_path, node, "-s", "mft-admin", auth=key_auth,
                     env=client_env(tmp_path, askpass_script=script),
                     input=rpc_lines(node_info_request(1)))
    info = assert_node_info(result, node)
    assert info["name"] == "k1"
    assert not marker.exists(), "the key login asked for a password or passphrase"
    assert log_lines(node, r"admin admin logged in from ")
    # sftp takes the same key.
    sftp = run_sftp(tmp_path, node, "ls -1", auth=key_auth)
    assert sftp.returncode == 0, sftp.stderr
    assert {"cluster.toml", "node.toml"} <= ls_names(sftp.stdout)


def test_an_unlisted_key_is_refused(keyed: tuple[Node, Path, Path], tmp_path: Path) -> None:
    node, good, other = keyed
    key_auth = ["-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey"]
    refused = run_ssh(tmp_path, node, "-s", "mft-admin", auth=["-i", str(other), *key_auth],
                      source="127.0.0.40", input=rpc_lines(node_info_request(1)))
    assert refused.returncode == 255
    assert "Permission denied (publickey" in refused.stderr, refused.stderr
    assert refused.stdout == ""
    assert wait_for_log(node, r"failed public key login for 'admin' from 127\.0\.0\.40 ")
    # The listed key belongs to the admin user only.
    wrong_user = run_ssh(tmp_path, node, "-s", "mft-admin", auth=["-i", str(good), *key_auth],
                         user="operator", source="127.0.0.41",
                         input=rpc_lines(node_info_request(1)))
    assert wrong_user.returncode == 255 and "Permission denied" in wrong_user.stderr
    assert wait_for_log(node, r"failed public key login for 'operator' from 127\.0\.0\.41 ")
    assert not log_lines(node, r"logged in")


# --------------------------------------------------------------------------- 7. nothing else

def test_exec_is_refused(served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "ls", "/")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "mft: command 'ls /' is not offered here" in result.stderr, result.stderr


def test_shell_is_refused(served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-T")
    assert result.returncode == 1
    assert "a shell is not offered here" in result.stderr, result.stderr


def test_pty_is_refused(served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-tt")
    assert result.returncode != 0
    assert "PTY allocation request failed" in result.stderr, result.stderr
    assert result.stdout == ""


def test_unknown_subsystem_is_refused(served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-s", "sftp-server-other")
    assert result.returncode == 1
    assert "subsystem 'sftp-server-other' is not offered here" in result.stderr, result.stderr


def test_stdio_forwarding_is_refused(served: Node, tmp_path: Path) -> None:
    # -W asks the node to open a TCP connection for us (direct-tcpip), here to itself.
    result = run_ssh(tmp_path, served, "-W", f"{served.host}:{served.port}", input="")
    assert result.returncode == 255
    assert "SSH-2.0-" not in result.stdout
    assert "open failed" in result.stderr, result.stderr
    assert "administratively prohibited" in result.stderr, result.stderr


def test_local_port_forwarding_is_refused(served: Node, tmp_path: Path) -> None:
    ssh = require_tool("ssh")
    port = free_port()
    proc = subprocess.Popen(
        [ssh, *common_options(tmp_path), *PASSWORD_ONLY, "-N",
         "-L", f"127.0.0.1:{port}:{served.host}:{served.port}",
         "-p", str(served.port), f"admin@{served.host}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=client_env(tmp_path))
    try:
        deadline = time.monotonic() + 15
        received: bytes | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                time.sleep(0.1)
                continue
            with conn:
                conn.settimeout(5)
                try:
                    received = conn.recv(256)  # a working forward shows the node's banner
                except (ConnectionResetError, socket.timeout):
                    received = b""
            break
        assert received is not None, "ssh never listened on the forwarded port"
        assert not received.startswith(b"SSH-"), received
        assert received == b""
    finally:
        _, stderr = finish(proc)
    assert "open failed" in stderr, stderr
    assert "port forwarding is not offered" in stderr, stderr


def test_remote_port_forwarding_is_refused(served: Node, tmp_path: Path) -> None:
    result = run_ssh(tmp_path, served, "-N", "-o", "ExitOnForwardFailure=yes",
                     "-R", "127.0.0.1:0:127.0.0.1:9")
    assert result.returncode == 255
    assert "remote port forwarding failed" in result.stderr, result.stderr


# --------------------------------------------------------------------------- 8. secrets

def test_the_admin_password_is_never_written_down(served: Node, tmp_path: Path) -> None:
    request = rpc_lines(node_info_request(1))
    assert_node_info(run_ssh(tmp_path, served, "-s", "mft-admin", input=request), served)
    wrong = run_ssh(tmp_path, served, "-o", "NumberOfPasswordPrompts=2", "-s", "mft-admin",
                    password=WRONG_PASSWORD, input=request)
    assert wrong.returncode == 255
    changed = mft(tmp_path, served, "ipfilter", "add", "allow", "203.0.113.9")
    assert changed.returncode == 0, changed.stderr
    assert run_sftp(tmp_path, served, "ls -1").returncode == 0
    assert stop_node_process(served) == 0
    files = [p for p in served.home.rglob("*") if p.is_file()]
    assert served.home / "serve.log" in files and served.home / "cluster.toml" in files
    assert any(p.parent.name == "backups" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in (ADMIN_PASSWORD, WRONG_PASSWORD):
            assert secret.encode() not in data, f"{secret!r} found in {path}"
    # The failures were logged, only without what was typed.
    assert len(log_lines(served, r"failed password login")) == 2


# --------------------------------------------------------------------------- 9. SIGTERM

def test_sigterm_stops_the_node_cleanly(served: Node, tmp_path: Path) -> None:
    ssh = require_tool("ssh")
    session = subprocess.Popen(
        [ssh, *common_options(tmp_path), *PASSWORD_ONLY, "-p", str(served.port),
         f"admin@{served.host}", "-s", "mft-admin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=client_env(tmp_path))
    try:
        assert session.stdin is not None
        session.stdin.write(rpc_lines(node_info_request(1)).encode())
        session.stdin.flush()
        line = read_line(session, 15)
        assert json.loads(line)["result"]["name"] == "p1"
        # An admin session is open while the node is told to stop.
        assert stop_node_process(served) == 0  # within its 10 s bound, with exit code 0
        session.wait(timeout=10)  # the open session ends with the node
        assert session.returncode != 0
    finally:
        finish(session)
    log = served.log.read_text() if served.log else ""
    assert "p1: shutting down" in log and "admin service stopped" in log
    assert "Traceback" not in log and "ERROR" not in log
    with pytest.raises(OSError):
        socket.create_connection((served.host, served.port), timeout=2).close()
