"""cluster.toml / node.toml: typed values, TOML round trips, and errors that say where."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.model.codec import (
    cluster_to_dict,
    config_hash,
    dumps_cluster,
    dumps_node,
    loads_cluster,
    loads_node,
    parse_listen,
    public_cluster_dict,
)
from tui.model.config import (
    AutobanSettings,
    LoadBalancerSettings,
    ClusterConfig,
    Member,
    MonitorSettings,
    NodeConfig,
    SyncSettings,
    User,
    default_sites,
)
from tui.model.ipfilter import Rule
from tui.model.passwords import hash_password
from tui.model.validate import ConfigError

HASH = hash_password("pw-for-tests", log_n=10)


def base() -> ClusterConfig:
    return ClusterConfig(sites=default_sites(), users=(User("admin", "admin", HASH),))


def edited(**changes: object) -> bytes:
    data = cluster_to_dict(base())
    data.update(changes)
    return tomli_w.dumps(data).encode()


def error_of(text: bytes | str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        loads_cluster(text, "/etc/mft/cluster.toml")
    return err.value


def test_defaults_match_the_design() -> None:
    cfg = base()
    assert cfg.sync == SyncSettings(enabled=True, interval_s=60)
    assert cfg.autoban == AutobanSettings(True, 10, 300, 3600)
    admin = cfg.site("admin")
    assert admin.system and admin.kind == "admin" and admin.ip_default == "deny"
    assert admin.ipfilter.decide("127.0.0.1").allowed
    assert not admin.ipfilter.decide("8.8.8.8").allowed
    assert cfg.site("default").ipfilter.decide("8.8.8.8").allowed


def test_round_trip_of_a_full_document() -> None:
    cfg = replace(
        base(), cluster_id="c-1", epoch=3, version=42,
        sync=SyncSettings(False, 300),
        members=(Member("m1", "node-a", "10.0.0.1", 14983, "primary", True, "SHA256:x"),
                 Member("m2", "node-b", "10.0.0.2", 2000, "secondary", False, "")),
        users=(User("admin", "admin", HASH, ("ssh-ed25519 AAAA x",), "", False),
               User("alice", "default", "", (), "/srv/alice", True)),
        file_host_keys=("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",),
    )
    text = dumps_cluster(cfg)
    assert loads_cluster(text) == cfg
    assert config_hash(loads_cluster(text)) == config_hash(cfg)


def test_hash_changes_with_content_only() -> None:
    cfg = base()
    assert config_hash(cfg) == config_hash(loads_cluster(dumps_cluster(cfg)))
    assert config_hash(cfg) != config_hash(cfg.bumped())
    assert len(config_hash(cfg)) == 64


def test_public_view_drops_secrets() -> None:
    cfg = replace(base(), file_host_keys=("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",))
    view = public_cluster_dict(cfg)
    assert view["users"][0]["password_hash"] == "<redacted>"
    assert view["file_service"] == {"host_keys": ["<redacted>"], "storage_root": ""}
    assert "PRIVATE" not in repr(view) and HASH not in repr(view)


def test_malformed_toml_names_file_and_line() -> None:
    err = error_of(b'version = 1\n[sync\nenabled = true\n')
    assert err.file == "/etc/mft/cluster.toml"
    assert "not valid TOML" in str(err) and "line 2" in str(err)


def test_non_utf8_is_refused() -> None:
    assert "not UTF-8" in str(error_of(b"version = 1\nname = '\xff'\n"))


@pytest.mark.parametrize("changes, key, words", [
    ({"version": "7"}, "version", "must be an integer"),
    ({"version": 0}, "version", "between 1"),
    ({"version": True}, "version", "must be an integer"),
    ({"epoch": -1}, "epoch", "between 0"),
    ({"sync": {"enabled": True, "interval_s": 4}}, "sync.interval_s", "between 5 and 86400"),
    ({"sync": {"enabled": True, "interval_s": 86401}}, "sync.interval_s", "86400"),
    ({"sync": {"enabled": "yes"}}, "sync.enabled", "true or false"),
    ({"sync": {"intervall_s": 30}}, "sync.intervall_s", "unknown key"),
    ({"colour": "blue"}, "colour", "unknown key"),
    ({"autoban": {"max_failures": 0}}, "autoban.max_failures", "between 1"),
    ({"sites": "admin"}, "sites", "array of tables"),
    ({"monitor": {"period_s": 0}}, "monitor.period_s", "between 1 and 3600"),
    ({"monitor": {"period": 5}}, "monitor.period", "unknown key"),
    ({"removed_members": "n1"}, "removed_members", "list of strings"),
])
def test_each_bad_value_names_its_key(changes: dict, key: str, words: str) -> None:
    err = error_of(edited(**changes))
    assert err.key == key
    assert words in err.problem
    assert str(err).startswith(f"/etc/mft/cluster.toml: {key}: ")


def test_missing_version() -> None:
    data = cluster_to_dict(base())
    del data["version"]
    err = error_of(tomli_w.dumps(data))
    assert err.key == "version" and "missing" in err.problem


def test_bad_rule_is_located() -> None:
    data = cluster_to_dict(base())
    data["sites"][0]["rules"][2] = {"action": "allow", "match": "10.0.0.0/33"}
    err = error_of(tomli_w.dumps(data))
    assert err.key == "sites[0].rules[2]" and "33" in err.problem


def test_bad_password_hash_is_located() -> None:
    data = cluster_to_dict(base())
    data["users"][0]["password_hash"] = "md5$abc"
    err = error_of(tomli_w.dumps(data))
    assert err.key == "users[0].password_hash" and "scrypt" in err.problem


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d["sites"].pop(0), "sites", "kind 'admin'"),
    (lambda d: d["sites"].append(dict(d["sites"][1])), "sites[2].name", "duplicate"),
    (lambda d: d["users"].append(dict(d["users"][0])), "users[1].name", "duplicate"),
    (lambda d: d["members"].extend([{"id": "m", "name": "a", "address": "h"},
                                    {"id": "m", "name": "b", "address": "h"}]),
     "members[1].id", "duplicate id 'm'"),
    (lambda d: d["users"][0].update(site="nowhere"), "users[0].site", "no site"),
    (lambda d: d["sites"][1].update(name="bad name!"), "sites[1].name", "not a valid name"),
    (lambda d: d["sites"][1].update(kind="ftp"), "sites[1].kind", "one of admin, file"),
    (lambda d: d["members"].append({"id": "m", "name": "n", "address": "h",
                                    "admin_port": 70000}), "members[0].admin_port", "65535"),
    (lambda d: d["members"].append({"id": "m", "name": "n", "address": ""}),
     "members[0].address", "empty"),
])
def test_cross_record_rules(mutate, key: str, words: str) -> None:
    data = cluster_to_dict(base())
    mutate(data)
    err = error_of(tomli_w.dumps(data))
    assert err.key == key and words in err.problem


def test_node_config_round_trip_and_errors() -> None:
    node = NodeConfig(node_id="abc123", name="node-1", admin_listen="127.0.0.1:2000")
    assert loads_node(dumps_node(node)) == node
    data = tomllib.loads(dumps_node(node).decode())
    for field, value, words in [("admin_listen", "127.0.0.1:99999", "65535"),
                                ("admin_listen", "127.0.0.1", "no port"),
                                ("role", "boss", "one of standalone"),
                                ("name", "", "not a valid name")]:
        with pytest.raises(ConfigError) as err:
            loads_node(tomli_w.dumps(data | {field: value}), "node.toml")
        assert err.value.key == field and words in err.value.problem


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:14983", ("0.0.0.0", 14983)),
    ("[::1]:2222", ("::1", 2222)),
    ("node-a:1", ("node-a", 1)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text, words", [
    ("host:0", "1 to 65535"), ("host:x", "1 to 65535"), (":22", "no host"),
    ("[::1:22", "matching"), ("host", "no port"),
])
def test_parse_listen_errors(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_listen(text)


names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
cidrs = st.builds(lambda a, b, n: f"10.{a}.{b}.0/{n}", st.integers(0, 255), st.integers(0, 255),
                  st.integers(24, 24))
rules = st.lists(st.builds(Rule, st.sampled_from(["allow", "deny", "allow-always"]),
                           st.one_of(cidrs, st.just("any"), st.just("::1")),
                           st.one_of(st.just(""), st.text(max_size=20))), max_size=5)


@settings(deadline=None, max_examples=60)
@given(
    version=st.integers(1, 2**40), epoch=st.integers(0, 2**20),
    interval=st.integers(5, 86400), enabled=st.booleans(), cluster_id=st.text(max_size=30),
    file_rules=rules, file_default=st.sampled_from(["allow", "deny"]),
    user_names=st.lists(names, unique=True, max_size=4),
    member_names=st.lists(names, unique=True, max_size=4),
    home=st.text(max_size=40), ports=st.integers(1, 65535),
    period=st.integers(1, 3600), removed=st.lists(names, unique=True, max_size=3),
)
def test_any_valid_config_survives_a_toml_round_trip(version, epoch, interval, enabled,
                                                     cluster_id, file_rules, file_default,
                                                     user_names, member_names, home, ports,
                                                     period, removed):
    sites = default_sites()
    sites = (sites[0], replace(sites[1], rules=tuple(file_rules), ip_default=file_default))
    users = (User("admin", "admin", HASH),) + tuple(
        User(f"u-{n}", "default", "", (f"ssh-ed25519 AAAA{n}",), home, bool(len(n) % 2))
        for n in user_names)
    members = tuple(Member(f"id-{n}", n, f"{n}.example", ports, "secondary", enabled)
                    for n in member_names)
    cfg = ClusterConfig(cluster_id, epoch, version, SyncSettings(enabled, interval),
                        AutobanSettings(), sites, users, members,
                        removed_members=tuple(f"id-{n}" for n in removed),
                        monitor=MonitorSettings(period))
    text = dumps_cluster(cfg)
    again = loads_cluster(text)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert dumps_cluster(again) == text


def test_load_balancer_settings_round_trip_and_bad_ones_are_named() -> None:
    lb = LoadBalancerSettings("required", ("10.0.0.5/32", "10.1.0.0/16"), 120, 10)
    member = Member("m1", "edge-1", "10.0.0.11", lb_state="drain", lb_weight=250)
    cfg = replace(base(), load_balancer=lb, members=(member,))
    back = loads_cluster(dumps_cluster(cfg))
    assert back.load_balancer == lb and back.members[0] == member
    assert back.load_balancer.trusts("10.1.2.3") and not back.load_balancer.trusts("10.2.0.1")
    assert back.load_balancer.trusts("::ffff:10.0.0.5")  # on a dual-stack socket
    for section, where, says in (
            ({"proxy_protocol": "on", "trusted": ["10.0.0.5"]}, "proxy_protocol", "one of"),
            ({"proxy_protocol": "required", "trusted": ["10.0.0.300"]}, "trusted[0]",
             "not an IP address"),
            ({"proxy_protocol": "optional", "trusted": []}, "trusted", "load balancers"),
            ({"max_lag_s": 0}, "max_lag_s", "between 1 and 86400"),
            ({"check_period_s": 0}, "check_period_s", "between 1 and 3600")):
        err = error_of(edited(load_balancer=section))
        assert err.key == f"load_balancer.{where}" and says in str(err), str(err)
    bad_member = cluster_to_dict(cfg)
    bad_member["members"][0]["lb_state"] = "paused"
    assert error_of(tomli_w.dumps(bad_member)).key == "members[0].lb_state"
    for weight in (0, 257, True):
        bad_member = cluster_to_dict(cfg)
        bad_member["members"][0]["lb_weight"] = weight
        assert error_of(tomli_w.dumps(bad_member)).key == "members[0].lb_weight"


def test_unused_load_balancer_fields_are_not_written() -> None:
    """A document that does not use them reads and hashes as before they existed, so
    members on the previous release keep taking it during a rolling upgrade."""
    data = cluster_to_dict(replace(base(), members=(Member("m1", "edge-1", "10.0.0.11"),)))
    assert "load_balancer" not in data and "lb_state" not in data["members"][0]
    assert "lb_weight" not in data["members"][0]
    lb = LoadBalancerSettings("required", ("10.0.0.5/32",))
    assert "check_period_s" not in cluster_to_dict(replace(base(), load_balancer=lb))[
        "load_balancer"]
