"""The `mft` command as an admin runs it: real processes, real node, exit codes and messages."""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from pathlib import Path

import pytest

from tests.support import ADMIN_PASSWORD, Node, run_mft, start_node_process, stop_node_process
from tui.model.passwords import verify_password


def no_traceback(*outputs: str) -> None:
    for text in outputs:
        assert "Traceback" not in text, text


def init(tmp_path: Path, home: Path, *args: str, **env: str):
    return run_mft(tmp_path, "init", "--home", str(home), "--scrypt-log-n", "12", *args, **env)


def test_init_creates_a_complete_private_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pw = tmp_path / "pw"
    pw.write_text("from-a-file-123\n")
    result = init(tmp_path, home, "--name", "edge-1", "--admin-user", "root-admin",
                  "--admin-password-file", str(pw))
    assert result.returncode == 0, result.stderr
    assert "edge-1" in result.stdout and "from-a-file-123" not in result.stdout
    for name in ("node.toml", "cluster.toml", "keys/admin_host_ed25519"):
        mode = stat.S_IMODE((home / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    node = tomllib.loads((home / "node.toml").read_text())
    cluster = tomllib.loads((home / "cluster.toml").read_text())
    assert node["name"] == "edge-1" and node["role"] == "standalone"
    assert cluster["cluster_id"] == "" and cluster["version"] == 1
    user = cluster["users"][0]
    assert user["name"] == "root-admin" and user["site"] == "admin"
    assert user["password_hash"].startswith("scrypt$ln=12,r=8,p=1$")
    assert verify_password("from-a-file-123", user["password_hash"])
    assert "from-a-file-123" not in (home / "cluster.toml").read_text()
    assert [s["name"] for s in cluster["sites"]] == ["admin", "default"]
    assert re.search(r"SHA256:\S+", result.stdout)


def test_init_generates_and_prints_a_password_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = init(tmp_path, home)
    assert result.returncode == 0, result.stderr
    password = re.search(r"admin password\s+(\S+)", result.stdout).group(1)
    assert len(password) >= 16
    stored = tomllib.loads((home / "cluster.toml").read_text())["users"][0]["password_hash"]
    assert verify_password(password, stored)


def test_init_takes_the_password_from_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = init(tmp_path, home, MFT_ADMIN_PASSWORD="env-password-9")
    assert result.returncode == 0 and "admin password" not in result.stdout
    stored = tomllib.loads((home / "cluster.toml").read_text())["users"][0]["password_hash"]
    assert verify_password("env-password-9", stored)


def test_init_refuses_an_existing_home_without_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert init(tmp_path, home, MFT_ADMIN_PASSWORD="first-password").returncode == 0
    before = (home / "node.toml").read_bytes(), (home / "cluster.toml").read_bytes()
    result = init(tmp_path, home, MFT_ADMIN_PASSWORD="second-password")
    assert result.returncode == 1 and "--force" in result.stderr
    no_traceback(result.stderr)
    assert ((home / "node.toml").read_bytes(), (home / "cluster.toml").read_bytes()) == before
    result = init(tmp_path, home, "--force", MFT_ADMIN_PASSWORD="second-password")
    assert result.returncode == 0, result.stderr
    assert (home / "backups/replaced-1/node.toml").read_bytes() == before[0]
    assert (home / "backups/replaced-1/cluster.toml").read_bytes() == before[1]
    assert (home / "node.toml").read_bytes() != before[0]


@pytest.mark.parametrize("args, env, words", [
    (("--name", "bad name"), {}, "node name 'bad name' is not valid"),
    (("--admin-password-file", "/nonexistent/pw"), {}, "cannot read the password file /nonexistent/pw"),
    ((), {"MFT_ADMIN_PASSWORD": "short"}, "at least 8"),
    (("--scrypt-log-n", "40"), {}, "--scrypt-log-n"),
])
def test_init_bad_input(tmp_path: Path, args, env, words: str) -> None:
    home = tmp_path / "home"
    result = init(tmp_path, home, *args, **env)
    assert result.returncode != 0 and words in result.stderr
    no_traceback(result.stderr)
    assert not (home / "node.toml").exists()


def test_serve_refuses_a_broken_config_naming_file_and_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert init(tmp_path, home, MFT_ADMIN_PASSWORD="a-good-password").returncode == 0
    text = (home / "cluster.toml").read_text().replace("interval_s = 60", "interval_s = 2")
    (home / "cluster.toml").write_text(text)
    result = run_mft(tmp_path, "serve", "--home", str(home), "--admin-listen", "127.0.0.4:0")
    assert result.returncode == 1
    assert f"{home / 'cluster.toml'}: sync.interval_s: must be between 5 and 86400, not 2" \
        in result.stderr
    no_traceback(result.stderr)
    (home / "cluster.toml").write_text("version = 1\n[[sites]\n")
    result = run_mft(tmp_path, "serve", "--home", str(home), "--admin-listen", "127.0.0.4:0")
    assert result.returncode == 1 and "not valid TOML" in result.stderr and "line 2" in result.stderr


@pytest.mark.parametrize("args, words", [
    (("--admin-listen", "127.0.0.1:99999"), "0 to 65535"),
    (("--admin-listen", "nonsense"), "no port"),
    (("--admin-listen", "192.0.2.1:14983"), "cannot listen"),
])
def test_serve_bad_listen_address(tmp_path: Path, args, words: str) -> None:
    home = tmp_path / "home"
    assert init(tmp_path, home, MFT_ADMIN_PASSWORD="a-good-password").returncode == 0
    result = run_mft(tmp_path, "serve", "--home", str(home), *args, timeout=30)
    assert result.returncode == 1 and words in result.stderr, result.stderr
    no_traceback(result.stderr)


def test_serve_without_a_home(tmp_path: Path) -> None:
    result = run_mft(tmp_path, "serve", "--home", str(tmp_path / "none"))
    assert result.returncode == 1 and "mft init --home" in result.stderr


@pytest.fixture
def served(tmp_path: Path):
    node = start_node_process(tmp_path, "cli-node", host="127.0.0.4")
    yield node
    assert stop_node_process(node) == 0


def mft(tmp_path: Path, node: Node, *args: str, **env: str):
    env.setdefault("MFT_PASSWORD", ADMIN_PASSWORD)
    return run_mft(tmp_path, *args, "--connect", node.connect, "--accept-new", **env)


def test_status_reports_and_exits_zero(tmp_path: Path, served: Node) -> None:
    result = mft(tmp_path, served, "status")
    assert result.returncode == 0, result.stderr
    assert "cli-node" in result.stdout and "standalone" in result.stdout
    result = mft(tmp_path, served, "status", "--json")
    data = json.loads(result.stdout)
    assert data["reachable"] is True
    for key in ("protocol", "software", "node_id", "name", "role", "cluster_id", "epoch",
                "version", "config_hash"):
        assert key in data["node"]


def test_status_exit_codes_for_failures(tmp_path: Path, served: Node) -> None:
    result = mft(tmp_path, served, "status", MFT_PASSWORD="wrong-password")
    assert result.returncode == 2 and "password" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_traceback(result.stderr)
    stop_node_process(served)
    result = mft(tmp_path, served, "status", "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "CONNECTION_REFUSED"
    assert "refused" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_mft(tmp_path, "status", "--connect", "nowhere.invalid")
    assert result.returncode == 2 and "DNS" in result.stderr


def test_unknown_host_key_needs_consent(tmp_path: Path, served: Node) -> None:
    result = run_mft(tmp_path, "status", "--connect", served.connect,
                     MFT_PASSWORD=ADMIN_PASSWORD)
    assert result.returncode == 2
    assert "SHA256:" in result.stderr and "--accept-new" in result.stderr
    assert not Path(tmp_path / "cli_known_hosts").exists()
    assert mft(tmp_path, served, "status").returncode == 0
    # Pinned: no flag needed any more.
    result = run_mft(tmp_path, "status", "--connect", served.connect, MFT_PASSWORD=ADMIN_PASSWORD)
    assert result.returncode == 0, result.stderr


def test_bad_connect_target(tmp_path: Path) -> None:
    # A usage error, not an unreachable node: monitoring must tell a typo from an outage.
    result = run_mft(tmp_path, "status", "--connect", "host:70000")
    assert result.returncode == 64 and "--connect" in result.stderr and "65535" in result.stderr
    result = run_mft(tmp_path, "ipfilter", "list", "--connect", "host:70000")
    assert result.returncode == 64
    result = run_mft(tmp_path, "status")
    assert result.returncode == 64 and "--connect" in result.stderr


def test_password_file_option(tmp_path: Path, served: Node) -> None:
    pw = tmp_path / "admin.pw"
    pw.write_text(ADMIN_PASSWORD + "\n")
    result = run_mft(tmp_path, "status", "--connect", served.connect, "--accept-new",
                     "--password-file", str(pw))
    assert result.returncode == 0, result.stderr


def test_ipfilter_add_list_test_remove(tmp_path: Path, served: Node) -> None:
    result = mft(tmp_path, served, "ipfilter", "add", "--site", "admin", "allow",
                 "203.0.113.7", "--note", "primary")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^9\s+allow\s+203\.0\.113\.7\s+primary$", result.stdout, re.M)
    result = mft(tmp_path, served, "ipfilter", "add", "deny", "10.9.0.0/16", "--position", "1")
    assert result.returncode == 0
    listing = mft(tmp_path, served, "ipfilter", "list", "--json")
    rules = json.loads(listing.stdout)["rules"]
    assert rules[0] == {"number": 1, "action": "deny", "match": "10.9.0.0/16"}
    assert rules[-1]["match"] == "203.0.113.7" and len(rules) == 10
    result = mft(tmp_path, served, "ipfilter", "test", "10.9.1.1")
    assert result.returncode == 1 and "denied by rule 1" in result.stdout
    result = mft(tmp_path, served, "ipfilter", "test", "10.8.1.1")
    assert result.returncode == 0 and "allowed by rule 4" in result.stdout
    result = mft(tmp_path, served, "ipfilter", "test", "203.0.113.7", "--json")
    assert json.loads(result.stdout)["rule_number"] == 10
    result = mft(tmp_path, served, "ipfilter", "remove", "1")
    assert result.returncode == 0
    assert mft(tmp_path, served, "ipfilter", "test", "10.9.1.1").returncode == 0
    cluster = tomllib.loads((served.home / "cluster.toml").read_text())
    assert cluster["version"] == 4
    assert len(list((served.home / "backups").glob("cluster.*.toml"))) == 3


@pytest.mark.parametrize("args, words", [
    (("add", "allow", "10.0.0.1/8"), "host bits"),
    (("add", "allow", "300.1.1.1"), "not an IP address"),
    (("add", "allow", "1.2.3.4", "--position", "99"), "--position must be 1 to 9"),
    (("remove", "42"), "has no rule 42"),
    (("list", "--site", "nope"), "no site named 'nope'"),
    (("test", "not-an-ip"), "not an IP address"),
    (("add", "deny", "127.0.0.0/8", "--position", "1"), "--confirm-lockout"),
])
def test_ipfilter_bad_input_changes_nothing(tmp_path: Path, served: Node, args, words) -> None:
    before = (served.home / "cluster.toml").read_bytes()
    result = mft(tmp_path, served, "ipfilter", *args)
    assert result.returncode == 1, result.stdout
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_traceback(result.stderr)
    assert (served.home / "cluster.toml").read_bytes() == before


def test_ipfilter_action_is_validated_by_argparse(tmp_path: Path, served: Node) -> None:
    result = mft(tmp_path, served, "ipfilter", "add", "permit", "1.2.3.4")
    assert result.returncode == 64 and "invalid choice: 'permit'" in result.stderr


def test_confirmed_lockout_really_locks_out(tmp_path: Path, served: Node) -> None:
    result = mft(tmp_path, served, "ipfilter", "add", "deny", "127.0.0.0/8", "--position", "1",
                 "--confirm-lockout")
    assert result.returncode == 0, result.stderr
    result = mft(tmp_path, served, "status")
    assert result.returncode == 2 and "Admin Site IP filter" in result.stderr


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run_mft(tmp_path, "--help")
    for command in ("init", "serve", "status", "ipfilter"):
        assert command in result.stdout
    assert os.linesep in result.stdout


def test_init_keep_existing_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert init(tmp_path, home, "--keep-existing", MFT_ADMIN_PASSWORD="first-password")\
        .returncode == 0
    before = (home / "cluster.toml").read_bytes()
    result = init(tmp_path, home, "--keep-existing", MFT_ADMIN_PASSWORD="other-password")
    assert result.returncode == 0 and "left as it is" in result.stdout
    assert (home / "cluster.toml").read_bytes() == before


def test_key_login_with_identity(tmp_path: Path) -> None:
    import asyncssh
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_admin"
    key_file.write_bytes(key.export_private_key())
    key_file.chmod(0o600)
    node = _keyed_node(tmp_path, key)
    try:
        result = run_mft(tmp_path, "status", "--connect", node.connect, "--accept-new",
                         "--identity", str(key_file))
        assert result.returncode == 0, result.stderr
        assert "keyed" in result.stdout
        other = asyncssh.generate_private_key("ssh-ed25519")
        (tmp_path / "id_other").write_bytes(other.export_private_key())
        (tmp_path / "id_other").chmod(0o600)
        result = run_mft(tmp_path, "status", "--connect", node.connect, "--accept-new",
                         "--identity", str(tmp_path / "id_other"))
        assert result.returncode == 2 and "did not accept" in result.stderr
    finally:
        stop_node_process(node)


def test_ctrl_c_stops_a_node_cleanly(tmp_path: Path) -> None:
    import signal
    node = start_node_process(tmp_path, "int-node", host="127.0.0.4")
    try:
        node.process.send_signal(signal.SIGINT)
        assert node.process.wait(timeout=10) == 0
    finally:
        if node.process.poll() is None:
            node.process.kill()
    log = node.log.read_text()
    assert "int-node: shutting down" in log and "admin service stopped" in log
    no_traceback(log)


def _keyed_node(tmp_path: Path, key) -> Node:
    import tomli_w

    from tests.support import make_home
    home = make_home(tmp_path / "keyed-default", "keyed")
    doc = tomllib.loads((home / "cluster.toml").read_text())
    doc["users"][0]["authorized_keys"] = [key.export_public_key().decode().strip()]
    (home / "cluster.toml").write_text(tomli_w.dumps(doc))
    return start_node_process(tmp_path, host="127.0.0.4", home=home)


def test_default_ssh_key_and_agent_log_in_without_a_password(tmp_path: Path) -> None:
    """With no password given, mft uses what `ssh` would: ~/.ssh keys, then the agent."""
    import subprocess

    import asyncssh

    from tests.support import require_tool
    key = asyncssh.generate_private_key("ssh-ed25519")
    node = _keyed_node(tmp_path, key)
    try:
        home = tmp_path / "user-home"
        (home / ".ssh").mkdir(parents=True)
        key_file = home / ".ssh" / "id_ed25519"
        key_file.write_bytes(key.export_private_key())
        key_file.chmod(0o600)
        result = run_mft(tmp_path, "status", "--connect", node.connect, "--accept-new",
                         HOME=str(home), SSH_AUTH_SOCK="")
        assert result.returncode == 0, result.stderr
        # The same key, held only by an agent.
        agent = require_tool("ssh-agent")
        sock = tmp_path / "agent.sock"
        started = subprocess.run([agent, "-a", str(sock)], capture_output=True, text=True,
                                 timeout=10, check=True)
        pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started.stdout).group(1))
        try:
            subprocess.run([require_tool("ssh-add"), str(key_file)], check=True, timeout=10,
                           capture_output=True, env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
            key_file.unlink()
            result = run_mft(tmp_path, "status", "--connect", node.connect,
                             HOME=str(home), SSH_AUTH_SOCK=str(sock))
            assert result.returncode == 0, result.stderr
        finally:
            os.kill(pid, 15)
        # Neither key nor agent: refused, and without a terminal there is no prompt.
        result = run_mft(tmp_path, "status", "--connect", node.connect,
                         HOME=str(home), SSH_AUTH_SOCK="")
        assert result.returncode == 2 and "did not accept" in result.stderr
    finally:
        stop_node_process(node)


def test_init_force_with_bad_input_keeps_the_node(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert init(tmp_path, home, MFT_ADMIN_PASSWORD="first-password").returncode == 0
    before = {p.relative_to(home): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    result = init(tmp_path, home, "--force", "--name", "bad name",
                  MFT_ADMIN_PASSWORD="second-password")
    assert result.returncode == 1 and "not valid" in result.stderr
    after = {p.relative_to(home): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert after == before


def test_init_force_sets_the_old_history_aside(tmp_path: Path) -> None:
    from tui.node.home import load_home
    home = tmp_path / "home"
    assert init(tmp_path, home, MFT_ADMIN_PASSWORD="first-password").returncode == 0
    (home / "backups").mkdir()
    for version in range(30, 41):
        (home / "backups" / f"cluster.0.{version}.toml").write_text(f"version = {version}\n")
    assert init(tmp_path, home, "--force", MFT_ADMIN_PASSWORD="second-password").returncode == 0
    assert list((home / "backups").glob("cluster.*.toml")) == []
    assert len(list((home / "backups/replaced-1").glob("cluster.*.toml"))) == 11
    assert load_home(home).cluster.version == 1
