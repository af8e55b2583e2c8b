"""`mft users`, `mft config`, `mft sessions`, `mft bans` and `mft audit` against a real node,
with the stock OpenSSH clients logging in as the users they manage."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_file_service import ALICE_PASSWORD, sftp
from tests.integration.test_openssh import client_env, common_options
from tests.support import (
    Node,
    require_tool,
    mft_on,
    start_node_process,
    stop_node_process,
)

pytestmark = pytest.mark.openssh


def mft(tmp_path: Path, node: Node, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return mft_on(tmp_path, node.connect, *args, **env)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    served = start_node_process(tmp_path, "cli-f", host="127.0.0.85")
    try:
        yield served
    finally:
        stop_node_process(served)


def test_users_from_add_to_remove(node: Node, tmp_path: Path) -> None:
    secret = tmp_path / "alice.pw"
    secret.write_text(ALICE_PASSWORD + "\n")
    added = mft(tmp_path, node, "users", "add", "alice", "--password-file", str(secret))
    assert added.returncode == 0, added.stderr
    assert sftp(tmp_path, node, "pwd").returncode == 0
    # From the environment; a key only; read-only; a home folder of its own.
    ok = mft(tmp_path, node, "users", "add", "bob", "--read-only", "--home-dir", "shared/b",
             MFT_USER_PASSWORD=ALICE_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    keygen = require_tool("ssh-keygen")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    keyed = mft(tmp_path, node, "users", "add", "carol", "--no-password", "--key",
                str(tmp_path / "k.pub"))
    assert keyed.returncode == 0, keyed.stderr
    key_login = subprocess.run(
        [require_tool("sftp"), *common_options(tmp_path), "-o", "IdentitiesOnly=yes",
         "-i", str(tmp_path / "k"), "-P", str(node.extra["file_port"]), "-b", "-",
         f"carol@{node.host}"], input="pwd\n", capture_output=True, text=True, timeout=30,
        env=client_env(tmp_path, "unused"))
    assert key_login.returncode == 0, key_login.stderr
    listed = json.loads(mft(tmp_path, node, "users", "list", "--json").stdout)["users"]
    by_name = {u["name"]: u for u in listed}
    assert by_name["bob"]["read_only"] and by_name["bob"]["home"] == "shared/b"
    assert len(by_name["carol"]["keys"]) == 1 and not by_name["carol"]["has_password"]
    assert "password_hash" not in json.dumps(listed) and "scrypt" not in json.dumps(listed)
    table = mft(tmp_path, node, "users", "list").stdout
    assert "alice" in table and "read-only" in table
    # A new password: the old one stops working.
    new = tmp_path / "new.pw"
    new.write_text("a-brand-new-password\n")
    assert mft(tmp_path, node, "users", "passwd", "alice", "--password-file",
               str(new)).returncode == 0
    assert sftp(tmp_path, node, "pwd").returncode != 0
    assert sftp(tmp_path, node, "pwd", password="a-brand-new-password").returncode == 0
    assert mft(tmp_path, node, "users", "remove", "alice").returncode == 0
    assert sftp(tmp_path, node, "pwd", password="a-brand-new-password").returncode != 0


@pytest.mark.parametrize("args, env, words", [
    (("users", "add", "alice"), {"MFT_USER_PASSWORD": "short"}, "8 to 1024"),
    (("users", "add", "bad name"), {"MFT_USER_PASSWORD": ALICE_PASSWORD}, "user name"),
    (("users", "add", "alice", "--home-dir", "../escape"), {"MFT_USER_PASSWORD":
                                                             ALICE_PASSWORD}, "without '..'"),
    (("users", "add", "alice", "--home-dir", "."), {"MFT_USER_PASSWORD": ALICE_PASSWORD},
     "without '..'"),
    (("config", "set", "storage_root", "/"), {}, "other than /"),
    (("users", "add", "alice", "--no-password"), {}, "a password or a key"),
    (("users", "remove", "nobody"), {}, "no user named 'nobody'"),
    (("users", "remove", "admin"), {}, "last admin"),
    (("config", "set", "storage_root", "relative/path"), {}, "absolute path"),
    (("config", "set", "autoban.max_failures", "0"), {}, "autoban.max_failures"),
    (("config", "set", "no.such", "1"), {}, "unknown setting"),
    (("bans", "lift", "not-an-ip"), {}, "not an IP address"),
    (("sessions", "kill", "nope"), {}, "no session"),
])
def test_bad_input_is_named_and_changes_nothing(node: Node, tmp_path: Path, args, env,
                                                words: str) -> None:
    before = json.loads(mft(tmp_path, node, "config", "get", "--json").stdout)["version"]
    result = mft(tmp_path, node, *args, **env)
    assert result.returncode != 0 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    after = json.loads(mft(tmp_path, node, "config", "get", "--json").stdout)["version"]
    assert after == before


def test_a_bad_key_file_is_refused(node: Node, tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("ssh-ed25519 not-base64 me@there\n")
    result = mft(tmp_path, node, "users", "add", "dave", "--no-password", "--key",
                 str(tmp_path / "bad.pub"))
    assert result.returncode != 0 and "not an OpenSSH public key" in result.stderr


def test_config_sessions_bans_and_audit(node: Node, tmp_path: Path) -> None:
    assert mft(tmp_path, node, "users", "add", "alice",
               MFT_USER_PASSWORD=ALICE_PASSWORD).returncode == 0
    shared = tmp_path / "elsewhere"
    assert mft(tmp_path, node, "config", "set", "storage_root", str(shared)).returncode == 0
    assert mft(tmp_path, node, "config", "get", "storage_root").stdout.strip() == str(shared)
    local = tmp_path / "local"
    local.mkdir()
    (local / "f.txt").write_text("hello")
    assert sftp(tmp_path, node, "put f.txt", cwd=local).returncode == 0
    assert (shared / "alice" / "f.txt").read_text() == "hello"
    # An open session is listed with its bytes, and can be ended.
    held = subprocess.Popen(
        [require_tool("sftp"), *common_options(tmp_path), "-o",
         "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o",
         "BatchMode=no", "-P", str(node.extra["file_port"]), f"alice@{node.host}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=client_env(tmp_path, ALICE_PASSWORD))
    try:
        deadline = time.monotonic() + 15
        sessions: list[dict] = []
        while not sessions and time.monotonic() < deadline:
            sessions = json.loads(mft(tmp_path, node, "sessions", "list", "--json").stdout)[
                "sessions"]
            time.sleep(0.2)
        assert len(sessions) == 1 and sessions[0]["user"] == "alice"
        assert sessions[0]["address"] == "127.0.0.1" or sessions[0]["address"].startswith("127.")
        killed = mft(tmp_path, node, "sessions", "kill", sessions[0]["id"])
        assert killed.returncode == 0, killed.stderr
        # The client notices when it next speaks: its session is gone.
        held.communicate("ls\n", timeout=15)
        assert held.returncode != 0
    finally:
        held.kill()
    assert json.loads(mft(tmp_path, node, "sessions", "list", "--json").stdout)[
        "sessions"] == []
    # Bans: none yet; the audit log has the login, the upload and the change.
    assert "autoban on" in mft(tmp_path, node, "bans", "list").stdout
    audit = json.loads(mft(tmp_path, node, "audit", "--json", "--lines", "100").stdout)
    events = [r["event"] for r in audit["records"]]
    assert {"login", "upload", "logout", "config"} <= set(events)
    upload = next(r for r in audit["records"] if r["event"] == "upload")
    assert upload["path"] == "/f.txt" and upload["bytes"] == 5 and upload["result"] == "ok"
    assert all(r["node"] == "cli-f" for r in audit["records"])
