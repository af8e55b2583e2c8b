"""The admin protocol against a real node over a real SSH connection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tui.protocol.rpc import (
    CONFLICT,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LOCKOUT,
    MAX_MESSAGE_BYTES,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL_VERSION,
    SUBSYSTEM,
    RpcError,
)
from tui.services.admin_client import AdminClient

from tests.support import CONSOLE_ADDRESS, Node, connect
from tui.services.errors import IpFilterRejected


async def test_node_info_has_the_promised_keys(admin: AdminClient, node: Node) -> None:
    info = await admin.call("node.info")
    for key in ("protocol", "software", "node_id", "name", "role", "cluster_id", "epoch",
                "version", "config_hash"):
        assert key in info
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["name"] == "n1"
    assert info["role"] == "standalone"
    assert info["config_hash"] == node.state.config_hash
    assert info["node_id"] == node.state.node.node_id


async def test_config_get_never_returns_secrets(admin: AdminClient, node: Node) -> None:
    result = await admin.call("config.get")
    text = json.dumps(result)
    stored_hash = node.state.cluster.user("admin").password_hash
    assert stored_hash and stored_hash not in text
    assert "scrypt$" not in text
    assert "PRIVATE KEY" not in text
    users = result["config"]["users"]
    assert users == [{"name": "admin", "site": "admin", "password_hash": "<redacted>",
                      "authorized_keys": [], "home": "", "read_only": False}]
    assert result["config"]["file_service"] == {"host_keys": ["<redacted>"], "storage_root": ""}
    assert result["config_hash"] == node.state.config_hash


async def _raw_exchange(admin: AdminClient, payload: bytes) -> list[dict]:
    """Send raw bytes on a fresh admin channel; return every line answered before EOF."""
    writer, reader, _ = await admin._conn.open_session(subsystem=SUBSYSTEM, encoding=None)
    writer.write(payload)
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 30)
    return [json.loads(line) for line in data.splitlines() if line.strip()]


async def test_malformed_json_gets_a_parse_error_and_the_channel_survives(
        admin: AdminClient) -> None:
    answers = await _raw_exchange(
        admin, b'{"jsonrpc": "2.0", "id": 1, "method": \n'
               b'[1, 2]\n'
               b'{"jsonrpc": "1.0", "id": 3, "method": "node.info"}\n'
               b'\xff\xfe\n'
               b'{"jsonrpc": "2.0", "id": 5, "method": "node.info"}\n')
    by_order = sorted(answers, key=lambda a: (a["id"] is not None, a["id"] or 0))
    codes = [a["error"]["code"] for a in answers if "error" in a]
    assert codes.count(PARSE_ERROR) == 2  # the truncated object and the non-UTF-8 line
    assert codes.count(INVALID_REQUEST) == 2  # an array, and jsonrpc 1.0
    assert by_order[-1]["id"] == 5 and by_order[-1]["result"]["name"] == "n1"


async def test_oversize_message_is_refused_and_the_connection_survives(
        admin: AdminClient) -> None:
    huge = b'{"jsonrpc":"2.0","id":1,"method":"node.info","params":{"pad":"' \
        + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"}}\n'
    answers = await _raw_exchange(
        admin, huge + b'{"jsonrpc":"2.0","id":2,"method":"node.info"}\n')
    assert answers[0]["error"]["code"] == MESSAGE_TOO_LARGE
    assert answers[0]["error"]["data"]["name"] == "MESSAGE_TOO_LARGE"
    assert answers[1]["id"] == 2 and "result" in answers[1]
    # The same SSH connection still serves calls on the main channel.
    assert (await admin.call("node.info"))["name"] == "n1"


async def test_client_refuses_to_send_an_oversize_message(admin: AdminClient) -> None:
    with pytest.raises(RpcError) as err:
        await admin.call("ipfilter.test", {"address": "x" * MAX_MESSAGE_BYTES})
    assert err.value.code == MESSAGE_TOO_LARGE


async def test_unknown_method(admin: AdminClient) -> None:
    with pytest.raises(RpcError) as err:
        await admin.call("node.reboot")
    assert err.value.code == METHOD_NOT_FOUND
    assert "node.reboot" in err.value.message


@pytest.mark.parametrize("method, params, field", [
    ("ipfilter.test", {}, "address"),
    ("ipfilter.test", {"address": 7}, "address"),
    ("ipfilter.test", {"address": "10.0.0.1", "colour": "red"}, "colour"),
    ("ipfilter.get", {"site": ["admin"]}, "site"),
    ("ipfilter.set", {"rules": "allow all"}, "rules"),
    ("ipfilter.set", {"rules": [{"action": "permit", "match": "10.0.0.0/8"}]}, "rules[0]"),
    ("ipfilter.set", {"rules": [{"action": "allow", "match": "10.0.0.300"}]}, "rules[0]"),
    ("ipfilter.set", {"rules": [], "default": "maybe"}, "default"),
    ("ipfilter.set", {"rules": [], "confirm_lockout": "yes"}, "confirm_lockout"),
    ("ipfilter.set", {"rules": [], "base_version": True}, "base_version"),
])
async def test_wrong_params_name_the_field_and_change_nothing(
        admin: AdminClient, node: Node, method: str, params: dict, field: str) -> None:
    before = node.state.cluster
    with pytest.raises(RpcError) as err:
        await admin.call(method, params)
    assert err.value.code == INVALID_PARAMS
    assert err.value.data["field"] == field
    assert field.split("[")[0] in err.value.message
    assert node.state.cluster == before


async def test_params_must_be_an_object(admin: AdminClient) -> None:
    answers = await _raw_exchange(
        admin, b'{"jsonrpc":"2.0","id":1,"method":"ipfilter.get","params":["admin"]}\n')
    assert answers[0]["error"]["code"] == INVALID_PARAMS


async def test_unknown_site(admin: AdminClient) -> None:
    with pytest.raises(RpcError) as err:
        await admin.call("ipfilter.get", {"site": "nope"})
    assert err.value.code == NOT_FOUND
    assert "admin" in err.value.message and "default" in err.value.message


async def test_ipfilter_get_and_test(admin: AdminClient) -> None:
    result = await admin.call("ipfilter.get", {"site": "admin"})
    assert result["default"] == "deny" and result["system"] is True
    assert result["rules"][0] == {"number": 1, "action": "allow", "match": "127.0.0.0/8"}
    verdict = await admin.call("ipfilter.test", {"site": "admin", "address": "8.8.8.8"})
    assert verdict["allowed"] is False and verdict["rule_number"] is None
    verdict = await admin.call("ipfilter.test", {"address": "192.168.7.7"})
    assert verdict["allowed"] is True and verdict["rule_number"] == 5
    assert verdict["rule"] == {"action": "allow", "match": "192.168.0.0/16"}


async def test_ipfilter_set_persists_and_bumps_the_version(
        admin: AdminClient, node: Node) -> None:
    from tui.node.home import load_home
    before = await admin.call("ipfilter.get")
    rules = [{"action": "allow", "match": "203.0.113.7", "note": "primary"}] + [
        {k: v for k, v in r.items() if k != "number"} for r in before["rules"]]
    result = await admin.call("ipfilter.set", {"rules": rules, "base_version": before["version"]})
    assert result["version"] == before["version"] + 1
    assert result["rules"][0] == {"number": 1, "action": "allow", "match": "203.0.113.7",
                                  "note": "primary"}
    on_disk = load_home(node.home).cluster
    assert on_disk == node.state.cluster
    assert on_disk.site("admin").rules[0].match == "203.0.113.7"
    backups = sorted(p.name for p in (node.home / "backups").iterdir())
    assert backups == [f"cluster.0.{before['version']}.toml"]
    info = await admin.call("node.info")
    assert info["version"] == result["version"]
    assert info["config_hash"] == result["config_hash"] != before.get("config_hash")


async def test_lockout_guard_refuses_unless_confirmed(admin: AdminClient, node: Node,
                                                      tmp_path: Path) -> None:
    before = node.state.cluster
    rules = [{"action": "deny", "match": CONSOLE_ADDRESS}, {"action": "allow", "match": "any"}]
    with pytest.raises(RpcError) as err:
        await admin.call("ipfilter.set", {"rules": rules})
    assert err.value.code == LOCKOUT
    assert err.value.data["address"] == CONSOLE_ADDRESS and err.value.data["rule_number"] == 1
    assert CONSOLE_ADDRESS in err.value.message
    assert node.state.cluster == before
    # The default action counts too.
    with pytest.raises(RpcError) as err:
        await admin.call("ipfilter.set", {"rules": [{"action": "allow", "match": "10.0.0.0/8"}]})
    assert err.value.code == LOCKOUT and err.value.data["rule_number"] is None
    result = await admin.call("ipfilter.set", {"rules": rules, "confirm_lockout": True})
    assert result["rules"][0]["match"] == CONSOLE_ADDRESS
    # Confirmed means applied: the console's address can no longer open a connection.
    with pytest.raises(IpFilterRejected) as rejected:
        await connect(node, tmp_path, local_addr=(CONSOLE_ADDRESS, 0))
    assert CONSOLE_ADDRESS in str(rejected.value) and "Admin Site IP filter" in str(rejected.value)
    other = await connect(node, tmp_path, local_addr=("127.0.0.6", 0))
    await other.aclose()


async def test_a_stale_edit_is_refused_as_a_conflict(admin: AdminClient, node: Node) -> None:
    base = (await admin.call("ipfilter.get"))["version"]
    rules = [{"action": "allow", "match": "any"}]
    await admin.call("ipfilter.set", {"rules": rules, "base_version": base})
    after_first = node.state.cluster
    with pytest.raises(RpcError) as err:
        await admin.call("ipfilter.set", {"rules": [], "default": "allow",
                                          "base_version": base})
    assert err.value.code == CONFLICT
    assert err.value.data["current_version"] == base + 1
    assert node.state.cluster == after_first


async def test_file_site_filter_has_its_own_default(admin: AdminClient) -> None:
    result = await admin.call("ipfilter.get", {"site": "default"})
    assert result["kind"] == "file" and result["default"] == "allow" and result["rules"] == []
    result = await admin.call("ipfilter.set", {"site": "default",
                                               "rules": [{"action": "deny", "match": "any"}]})
    assert result["rules"][0]["match"] == "any"  # no lockout guard: not the admin site


async def test_concurrent_calls_on_one_channel(admin: AdminClient) -> None:
    results = await asyncio.gather(*(admin.call("ipfilter.test", {"address": f"10.0.0.{i}"})
                                     for i in range(1, 51)))
    assert [r["address"] for r in results] == [f"10.0.0.{i}" for i in range(1, 51)]


async def test_notifications_get_no_answer_even_on_error(admin: AdminClient) -> None:
    answers = await _raw_exchange(
        admin, b'{"jsonrpc":"2.0","method":"node.info"}\n'
               b'{"jsonrpc":"2.0","method":"no.such.method"}\n'
               b'{"jsonrpc":"2.0","id":"last","method":"node.info"}\n')
    assert [a["id"] for a in answers] == ["last"]


async def test_an_invalid_request_keeps_its_id(admin: AdminClient) -> None:
    answers = await _raw_exchange(admin, b'{"jsonrpc":"1.0","id":77,"method":"node.info"}\n')
    assert answers == [{"jsonrpc": "2.0", "id": 77, "error": {
        "code": INVALID_REQUEST, "message": 'a message must have "jsonrpc": "2.0"',
        "data": {"name": "INVALID_REQUEST"}}}]


async def test_setting_the_same_rules_makes_no_new_version(admin: AdminClient,
                                                           node: Node) -> None:
    current = await admin.call("ipfilter.get")
    rules = [{k: v for k, v in r.items() if k != "number"} for r in current["rules"]]
    result = await admin.call("ipfilter.set", {"rules": rules})
    assert result["version"] == current["version"]
    assert not (node.home / "backups").exists() or not any((node.home / "backups").iterdir())


async def test_deeply_nested_json_is_a_parse_error(admin: AdminClient) -> None:
    answers = await _raw_exchange(
        admin, b"[" * 100_000 + b"\n" + b'{"jsonrpc":"2.0","id":2,"method":"node.info"}\n')
    assert answers[0]["error"]["code"] == PARSE_ERROR and "deeply" in answers[0]["error"]["message"]
    assert answers[1]["id"] == 2 and "result" in answers[1]
    assert (await admin.call("node.info"))["name"] == "n1"


async def test_break_and_signal_requests_do_not_end_the_session(admin: AdminClient) -> None:
    writer, reader, _ = await admin._conn.open_session(subsystem=SUBSYSTEM, encoding=None)
    writer.channel.send_break(100)
    writer.channel.send_signal("INT")
    writer.write(b'{"jsonrpc":"2.0","id":9,"method":"node.info"}\n')
    line = await asyncio.wait_for(reader.readline(), 10)
    assert json.loads(line)["id"] == 9
    writer.close()
    assert (await admin.call("node.info"))["name"] == "n1"
