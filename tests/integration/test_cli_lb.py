"""`mft lb haproxy` and `mft lb proxy-protocol` against a real node process, and the real
`haproxy -c`."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    Node,
    require_tool,
    mft_on,
    start_node_process,
    stop_node_process,
)
from tui.cli import build_parser
from tui.commands import lb as lb_cmd
from tui.protocol.rpc import METHOD_NOT_FOUND, RpcError
from tui.services.haproxy_config import check

# Nothing listens here: a command that got as far as connecting would exit 2 (unreachable).
NOWHERE = "admin@127.0.0.94:9"


mft = mft_on


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    served = start_node_process(tmp_path, "lb1", host="127.0.0.93")
    try:
        yield served
    finally:
        stop_node_process(served)


def haproxy_args(tmp_path: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return ("lb", "haproxy", "--out", str(out), "--stats-socket", str(tmp_path / "mft.sock"),
            *extra)


def test_haproxy_config_for_the_node_is_written_and_valid(node: Node, tmp_path: Path) -> None:
    require_tool("haproxy")
    out = tmp_path / "haproxy.cfg"
    done = mft(tmp_path, node.connect, *haproxy_args(tmp_path, out, "--balance", "leastconn"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # the configuration went to the file
    assert "haproxy -c: configuration is valid" in done.stderr
    text = out.read_text()
    assert check(text).ok
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert "    balance leastconn\n" in text
    servers = [line.split() for line in text.splitlines() if line.startswith("    server ")]
    assert len(servers) == 1
    assert servers[0][1:3] == ["lb1", f"127.0.0.93:{node.extra['file_port']}"]
    assert servers[0][servers[0].index("agent-port") + 1] == str(node.extra["agent_port"])
    assert "send-proxy-v2" not in text  # the node's PROXY protocol is off
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".haproxy.cfg.tmp")]


def test_without_out_the_configuration_goes_to_stdout(node: Node, tmp_path: Path) -> None:
    require_tool("haproxy")
    done = mft(tmp_path, node.connect, "lb", "haproxy", "--http-sticky", "cookie",
               "--stats-socket", str(tmp_path / "mft.sock"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# HAProxy configuration for a standalone mft node")
    assert "\nbackend mft_https\n" in done.stdout and "cookie MFTSRV" in done.stdout
    assert "haproxy -c: configuration is valid" in done.stderr


def test_an_invalid_configuration_is_not_written(node: Node, tmp_path: Path) -> None:
    # An haproxy that finds fault with everything: the existing file must survive.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "haproxy").write_text("#!/bin/sh\necho '[ALERT] config : parsing error here' >&2\n"
                                  "exit 1\n")
    (fake / "haproxy").chmod(0o755)
    out = tmp_path / "haproxy.cfg"
    out.write_text("the working configuration\n")
    done = mft(tmp_path, node.connect, *haproxy_args(tmp_path, out), PATH=str(fake))
    assert done.returncode == 1, done.stderr
    assert "not valid" in done.stderr and "parsing error here" in done.stderr
    assert f"{out} was not written" in done.stderr
    assert out.read_text() == "the working configuration\n"


def test_a_missing_haproxy_is_said_and_not_an_error(node: Node, tmp_path: Path) -> None:
    empty = tmp_path / "no-bin"
    empty.mkdir()
    out = tmp_path / "haproxy.cfg"
    done = mft(tmp_path, node.connect, *haproxy_args(tmp_path, out), PATH=str(empty))
    assert done.returncode == 0, done.stderr
    assert "haproxy is not installed" in done.stderr and "not checked" in done.stderr
    assert "backend mft_sftp" in out.read_text()


@pytest.mark.parametrize("args, words", [
    (("lb", "haproxy", "--bind", "0.0.0.0"), "--bind '0.0.0.0' has no port"),
    (("lb", "haproxy", "--bind", "0.0.0.0:99999"), "must be a number from 1 to 65535"),
    (("lb", "haproxy", "--bind", "not an address:2222"), "not an IP address or host name"),
    (("lb", "haproxy", "--http-bind", "::1:443"), "--http-bind"),
    (("lb", "haproxy", "--stats-socket", "relative.sock"), "absolute path"),
    (("lb", "haproxy", "--http-port", "0"), "--http-port"),
    (("lb", "proxy-protocol", "required"), "needs --trusted"),
    (("lb", "proxy-protocol", "optional", "--trusted", ""), "needs --trusted"),
    (("lb", "proxy-protocol", "optional", "--trusted", "10.0.0.0/8,10.0.0.300"),
     "'10.0.0.300' is not an address or network"),
    (("lb", "proxy-protocol", "off", "--trusted", "example.com"), "'example.com' is not"),
])
def test_bad_input_is_refused_before_connecting(tmp_path: Path, args: tuple[str, ...],
                                                words: str) -> None:
    out = tmp_path / "haproxy.cfg"
    extra = ("--out", str(out)) if args[1] == "haproxy" else ()
    done = mft(tmp_path, NOWHERE, *args, *extra)
    assert done.returncode == 64, done.stderr
    assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_proxy_protocol_is_set_and_the_config_follows(node: Node, tmp_path: Path) -> None:
    # needs lb.set_proxy_protocol
    require_tool("haproxy")
    done = mft(tmp_path, node.connect, "lb", "proxy-protocol", "optional", "--trusted",
               "127.0.0.0/8")
    assert done.returncode == 0, done.stderr
    assert "optional" in done.stdout and "127.0.0.0/8" in done.stdout
    out = tmp_path / "haproxy.cfg"
    generated = mft(tmp_path, node.connect, *haproxy_args(tmp_path, out))
    assert generated.returncode == 0, generated.stderr
    servers = [line for line in out.read_text().splitlines() if line.startswith("    server ")]
    assert len(servers) == 1 and servers[0].endswith(" send-proxy-v2 check-send-proxy")


class _OlderNode:
    """A node from before load balancing: no lb.get, no file or agent ports reported."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __aenter__(self) -> "_OlderNode":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def call(self, method: str, params: object = None, timeout: float = 0) -> dict:
        self.calls.append(method)
        if method == "cluster.status":
            return {"cluster": {"cluster_id": "c-old", "version": 3},
                    "servers": [{"name": "a", "address": "127.0.0.1"},
                                {"name": "b", "address": "127.0.0.2"}]}
        raise RpcError(METHOD_NOT_FOUND, f"no method named {method!r}")


def test_an_older_node_without_lb_get_gets_proxy_protocol_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("haproxy")
    older = _OlderNode()

    async def open_client(args: object) -> _OlderNode:
        return older

    monkeypatch.setattr(lb_cmd, "open_client", open_client)
    out = tmp_path / "haproxy.cfg"
    args = build_parser().parse_args(["lb", "haproxy", "--connect", "old", "--out", str(out),
                                      "--stats-socket", str(tmp_path / "mft.sock")])
    assert args.run(args) == 0
    assert older.calls == ["cluster.status", "lb.get"]
    text = out.read_text()
    assert "send-proxy" not in text and "mft cluster c-old, configuration version 3" in text
    assert "    server a 127.0.0.1:2222 " in text and "    server b 127.0.0.2:2222 " in text
    assert text.count("file port not reported, assumed 2222") == 2
    err = capsys.readouterr().err
    assert "did not report its file and agent ports" in err
    assert "haproxy -c: configuration is valid" in err
