"""Tests for tui.model.ipfilter."""

from __future__ import annotations

import copy
import ipaddress
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.model.ipfilter import (
    ACTIONS,
    ADMIN_DEFAULT_RULES,
    Decision,
    IpFilter,
    IpFilterError,
    Rule,
    admin_default_filter,
    parse_address,
)

# --------------------------------------------------------------------------
# parsing and canonicalisation of match forms


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("  10.1.2.3  ", "10.1.2.3"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.0.0.0/ 8", "10.0.0.0/8"),
        ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
        ("10.0.0.0/0.255.255.255", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("10.1.2.3/32", "10.1.2.3/32"),
        ("2001:0DB8::/32", "2001:db8::/32"),
        ("fe80::/10", "fe80::/10"),
        ("::/0", "::/0"),
        ("10.0.0.1-10.0.0.9", "10.0.0.1-10.0.0.9"),
        ("10.0.0.1 - 10.0.0.9", "10.0.0.1-10.0.0.9"),
        ("10.0.0.1 -10.0.0.9", "10.0.0.1-10.0.0.9"),
        ("10.0.0.5-10.0.0.5", "10.0.0.5-10.0.0.5"),
        ("2001:db8::1-2001:DB8::FF", "2001:db8::1-2001:db8::ff"),
        ("any", "any"),
        (" ANY ", "any"),
        ("Any", "any"),
        # IPv4-mapped rules become the IPv4 rule so that they can match.
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::ffff:10.0.0.1-::ffff:10.0.0.9", "10.0.0.1-10.0.0.9"),
    ],
)
def test_match_is_canonicalised(text, canonical):
    assert Rule("allow", text).match == canonical


def test_equal_rules_compare_equal():
    assert Rule("allow", "10.0.0.0/255.0.0.0") == Rule("allow", "10.0.0.0/8")
    assert Rule("deny", "2001:DB8::/32") == Rule("deny", "2001:db8::/32")
    assert Rule("deny", "10.0.0.1 - 10.0.0.9") == Rule("deny", "10.0.0.1-10.0.0.9")
    assert hash(Rule("allow", "ANY")) == hash(Rule("allow", "any"))
    assert Rule("allow", "any") != Rule("deny", "any")
    assert Rule("allow", "any", "x") != Rule("allow", "any")


def test_action_is_normalised():
    assert Rule(" Allow ", "any").action == "allow"
    assert Rule("ALLOW-ALWAYS", "any").action == "allow-always"
    assert ACTIONS == ("allow", "deny", "allow-always")


@pytest.mark.parametrize(
    ("match", "inside", "outside"),
    [
        ("10.1.2.3", ["10.1.2.3"], ["10.1.2.4", "10.1.2.2", "::a01:203"]),
        ("2001:db8::1", ["2001:db8::1", "2001:DB8::0:1"], ["2001:db8::2", "0.0.0.1"]),
        ("10.0.0.0/8", ["10.0.0.0", "10.255.255.255"], ["9.255.255.255", "11.0.0.0"]),
        ("fe80::/10", ["fe80::", "febf:ffff::1"], ["fec0::", "fe7f::1"]),
        ("10.0.0.1-10.0.0.9", ["10.0.0.1", "10.0.0.5", "10.0.0.9"], ["10.0.0.0", "10.0.0.10"]),
        ("2001:db8::10-2001:db8::20", ["2001:db8::10", "2001:db8::1a"], ["2001:db8::f", "2001:db8::21"]),
        ("any", ["0.0.0.0", "255.255.255.255", "::", "2001:db8::1"], []),
        ("0.0.0.0/0", ["1.2.3.4"], ["::1", "2001:db8::1"]),
        ("::/0", ["::1", "2001:db8::1"], ["1.2.3.4", "::ffff:1.2.3.4"]),
    ],
)
def test_rule_matches(match, inside, outside):
    rule = Rule("allow", match)
    for address in inside:
        assert rule.matches(address), address
        assert rule.matches(ipaddress.ip_address(address)), address
    for address in outside:
        assert not rule.matches(address), address


def test_rule_matches_rejects_malformed_address():
    with pytest.raises(IpFilterError, match="'nope' is not an IP address"):
        Rule("allow", "any").matches("nope")
    with pytest.raises(IpFilterError, match="not an IP address"):
        Rule("allow", "10.0.0.0/8").matches("10.0.0.256")


# --------------------------------------------------------------------------
# error messages


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"),
        ("2001:db8::1/32", "'2001:db8::1/32' has host bits set; did you mean 2001:db8::/32?"),
        ("300.1.1.1", "'300.1.1.1' is not an IP address, CIDR, range or 'any'"),
        ("example.com", "'example.com' is not an IP address, CIDR, range or 'any'"),
        ("10.0.0", "'10.0.0' is not an IP address, CIDR, range or 'any'"),
        ("2001:db8:::1", "'2001:db8:::1' is not an IP address, CIDR, range or 'any'"),
        ("10.0.0.0/8/8", "'10.0.0.0/8/8' is not an IP address, CIDR, range or 'any'"),
        ("/8", "'/8' is not an IP address, CIDR, range or 'any'"),
        ("300.0.0.0/8", "'300.0.0.0/8' is not an IP address, CIDR, range or 'any'"),
        ("10.0.0.9-10.0.0.1", "range '10.0.0.9-10.0.0.1' ends before it starts"),
        ("2001:db8::9-2001:db8::1", "range '2001:db8::9-2001:db8::1' ends before it starts"),
        ("10.0.0.1-2001:db8::1", "range '10.0.0.1-2001:db8::1' mixes IPv4 and IPv6"),
        ("::1 - 10.0.0.1", "range '::1 - 10.0.0.1' mixes IPv4 and IPv6"),
        ("10.0.0.1-", "range '10.0.0.1-' needs an address on both sides of '-'"),
        ("-10.0.0.1", "range '-10.0.0.1' needs an address on both sides of '-'"),
        ("10.0.0.1-10.0.0.2-10.0.0.3", "'10.0.0.1-10.0.0.2-10.0.0.3' is not an IP address"),
        ("10.0.0.1-10.0.0.x", "'10.0.0.1-10.0.0.x' is not an IP address, CIDR, range or 'any'"),
        ("10.0.0.0/8-10.0.0.9", "range '10.0.0.0/8-10.0.0.9' must join two single addresses, not CIDRs"),
        ("10.0.0.0/33", "'10.0.0.0/33' has prefix length 33, but IPv4 allows at most 32"),
        ("::/129", "'::/129' has prefix length 129, but IPv6 allows at most 128"),
        ("10.0.0.0/255.0.255.0", "'10.0.0.0/255.0.255.0' has an invalid prefix length or netmask '255.0.255.0'"),
        ("::/ffff::", "'::/ffff::' has an invalid prefix length 'ffff::'; use a number from 0 to 128"),
        ("fe80::1%eth0", "'fe80::1%eth0' has an interface zone; rules match addresses without one, so write fe80::1 instead"),
        ("", "a rule's match is empty"),
        ("   ", "a rule's match is empty"),
    ],
)
def test_bad_match_messages(match, message):
    with pytest.raises(IpFilterError) as info:
        Rule("allow", match)
    assert message in str(info.value)


def test_ip_filter_error_is_value_error():
    assert issubclass(IpFilterError, ValueError)


@pytest.mark.parametrize("action", ["permit", "", "block", None, 1])
def test_unknown_action_message(action):
    with pytest.raises(IpFilterError) as info:
        Rule(action, "any")
    assert str(info.value) == (
        f"unknown action {action!r}; use allow, deny or allow-always"
    )


def test_non_text_match_and_note():
    with pytest.raises(IpFilterError, match="match must be text, not int"):
        Rule("allow", 167772160)
    with pytest.raises(IpFilterError, match="note must be text, not int"):
        Rule("allow", "any", 3)


@pytest.mark.parametrize("default", ["allow-always", "permit", "", None])
def test_bad_default_action(default):
    with pytest.raises(IpFilterError) as info:
        IpFilter(default=default)
    assert str(info.value) == f"default action must be allow or deny, not {default!r}"


def test_filter_rejects_non_rules():
    with pytest.raises(IpFilterError, match="rule 2 is a dict, not a Rule"):
        IpFilter(rules=(Rule("allow", "any"), {"action": "allow", "match": "any"}))
    with pytest.raises(IpFilterError, match="rules must be a sequence of Rule"):
        IpFilter(rules=5)


# --------------------------------------------------------------------------
# parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3", ipaddress.IPv4Address("10.1.2.3")),
        (" 10.1.2.3\n", ipaddress.IPv4Address("10.1.2.3")),
        ("2001:DB8::1", ipaddress.IPv6Address("2001:db8::1")),
        ("::ffff:1.2.3.4", ipaddress.IPv4Address("1.2.3.4")),
        ("::ffff:102:304", ipaddress.IPv4Address("1.2.3.4")),
        ("fe80::1%eth0", ipaddress.IPv6Address("fe80::1")),
        ("fe80::1%3", ipaddress.IPv6Address("fe80::1")),
        ("::ffff:1.2.3.4%eth0", ipaddress.IPv4Address("1.2.3.4")),
        (ipaddress.IPv4Address("1.2.3.4"), ipaddress.IPv4Address("1.2.3.4")),
        (ipaddress.IPv6Address("::ffff:1.2.3.4"), ipaddress.IPv4Address("1.2.3.4")),
        (ipaddress.IPv6Address("fe80::1%eth0"), ipaddress.IPv6Address("fe80::1")),
        # Only ::ffff:0:0/96 is treated as IPv4; IPv4-compatible is not.
        ("::1.2.3.4", ipaddress.IPv6Address("::102:304")),
    ],
)
def test_parse_address(text, expected):
    result = parse_address(text)
    assert result == expected
    assert type(result) is type(expected)
    if result.version == 6:
        assert result.scope_id is None


@pytest.mark.parametrize(
    "text", ["", "nope", "300.1.1.1", "10.0.0.0/8", "1.2.3.4%eth0", "fe80::1%", "10.0.0.1-10.0.0.2"]
)
def test_parse_address_rejects(text):
    with pytest.raises(IpFilterError) as info:
        parse_address(text)
    assert str(info.value) == f"{text!r} is not an IP address"


@pytest.mark.parametrize("value", [None, 16909060, b"1.2.3.4", ipaddress.ip_network("10.0.0.0/8")])
def test_parse_address_rejects_non_text(value):
    with pytest.raises(IpFilterError, match="expected an IP address as text"):
        parse_address(value)


# --------------------------------------------------------------------------
# decisions


def test_first_match_wins():
    f = IpFilter(
        rules=(
            Rule("deny", "10.0.0.5"),
            Rule("allow", "10.0.0.0/24"),
            Rule("deny", "10.0.0.0/8"),
            Rule("allow", "any"),
        ),
        default="deny",
    )
    d = f.decide("10.0.0.5")
    assert (d.allowed, d.action, d.rule_index, d.rule) == (False, "deny", 0, f.rules[0])
    d = f.decide("10.0.0.6")
    assert (d.allowed, d.action, d.rule_index) == (True, "allow", 1)
    d = f.decide("10.9.0.6")
    assert (d.allowed, d.action, d.rule_index) == (False, "deny", 2)
    d = f.decide("8.8.8.8")
    assert (d.allowed, d.action, d.rule_index) == (True, "allow", 3)
    d = f.decide("2001:db8::1")
    assert (d.allowed, d.action, d.rule_index) == (True, "allow", 3)


def test_order_matters():
    broad_first = IpFilter(rules=(Rule("allow", "10.0.0.0/8"), Rule("deny", "10.1.2.3")))
    narrow_first = IpFilter(rules=(Rule("deny", "10.1.2.3"), Rule("allow", "10.0.0.0/8")))
    assert broad_first.decide("10.1.2.3").allowed
    assert not narrow_first.decide("10.1.2.3").allowed


def test_default_action_applies_when_nothing_matches():
    rules = (Rule("deny", "10.0.0.0/8"),)
    d = IpFilter(rules=rules, default="allow").decide("192.0.2.1")
    assert d == Decision(allowed=True, action="allow", rule_index=None, rule=None)
    d = IpFilter(rules=rules, default="deny").decide("192.0.2.1")
    assert d == Decision(allowed=False, action="deny", rule_index=None, rule=None)
    assert IpFilter().default == "deny"
    assert not IpFilter().decide("127.0.0.1").allowed
    assert IpFilter(default=" Allow ").default == "allow"


def test_rules_list_becomes_tuple():
    f = IpFilter(rules=[Rule("allow", "any")])
    assert f.rules == (Rule("allow", "any"),)
    assert f == IpFilter(rules=(Rule("allow", "any"),))
    assert hash(f) == hash(IpFilter(rules=(Rule("allow", "any"),)))


def test_allow_always_exempts_from_ban():
    f = IpFilter(
        rules=(
            Rule("allow-always", "192.0.2.10"),
            Rule("allow", "192.0.2.0/24"),
            Rule("deny", "198.51.100.0/24"),
        ),
        default="deny",
    )
    always = f.decide("192.0.2.10")
    assert always.allowed and always.action == "allow-always" and always.exempt_from_ban
    plain = f.decide("192.0.2.11")
    assert plain.allowed and not plain.exempt_from_ban
    denied = f.decide("198.51.100.1")
    assert not denied.allowed and not denied.exempt_from_ban
    default = f.decide("203.0.113.1")
    assert not default.allowed and not default.exempt_from_ban
    assert not IpFilter(default="allow").decide("203.0.113.1").exempt_from_ban


def test_mapped_ipv4_peer_is_judged_as_ipv4():
    f = IpFilter(rules=(Rule("allow", "10.0.0.0/8"), Rule("deny", "::/0")), default="deny")
    d = f.decide("::ffff:10.1.2.3")
    assert d.allowed and d.rule_index == 0
    assert f.decide(ipaddress.IPv6Address("::ffff:10.1.2.3")).rule_index == 0
    # An IPv6 rule covering the mapped block does not catch mapped peers.
    g = IpFilter(rules=(Rule("allow", "::/0"),), default="deny")
    assert not g.decide("::ffff:10.1.2.3").allowed
    assert g.decide("::10.1.2.3").allowed  # IPv4-compatible stays IPv6


def test_mapped_rule_matches_ipv4_and_mapped_peers():
    rule = Rule("allow", "::ffff:192.0.2.0/120")
    assert rule.match == "192.0.2.0/24"
    assert rule.matches("192.0.2.7")
    assert rule.matches("::ffff:192.0.2.7")


def test_scoped_ipv6_peer_is_judged_without_scope():
    f = IpFilter(rules=(Rule("allow", "fe80::1"), Rule("deny", "fe80::/10")), default="allow")
    assert f.decide("fe80::1%eth0").rule_index == 0
    assert f.decide("fe80::1%7").allowed
    assert f.decide(ipaddress.IPv6Address("fe80::1%eth0")).rule_index == 0
    assert f.decide("fe80::2%eth0").rule_index == 1


def test_decide_rejects_malformed_address():
    with pytest.raises(IpFilterError, match="'bogus' is not an IP address"):
        admin_default_filter().decide("bogus")
    with pytest.raises(IpFilterError, match="not an IP address"):
        IpFilter(rules=(Rule("allow", "any"),)).decide("1.2.3")


def test_describe():
    f = IpFilter(
        rules=(Rule("deny", "10.0.0.5"), Rule("allow", "10.0.0.0/8"), Rule("allow-always", "any")),
        default="deny",
    )
    assert f.decide("10.0.0.7").describe() == "allowed by rule 2 (allow 10.0.0.0/8)"
    assert f.decide("10.0.0.5").describe() == "denied by rule 1 (deny 10.0.0.5)"
    assert f.decide("::1").describe() == "allowed by rule 3 (allow-always any)"
    assert IpFilter().decide("10.0.0.1").describe() == "denied by the default action (deny)"
    assert IpFilter(default="allow").decide("::1").describe() == (
        "allowed by the default action (allow)"
    )


# --------------------------------------------------------------------------
# admin default


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "fe80::1", "172.16.0.1",
     "172.31.255.255", "169.254.1.1", "fd00::1", "::ffff:127.0.0.1", "fe80::1%eth0"],
)
def test_admin_default_allows(address):
    assert admin_default_filter().decide(address).allowed


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "203.0.113.7", "2001:db8::1", "172.32.0.1", "11.0.0.1", "::2", "fec0::1"],
)
def test_admin_default_denies(address):
    d = admin_default_filter().decide(address)
    assert not d.allowed
    assert d.rule_index is None and d.action == "deny"


def test_admin_default_rules():
    assert [r.to_dict() for r in ADMIN_DEFAULT_RULES] == [
        {"action": "allow", "match": m}
        for m in ("127.0.0.0/8", "::1", "10.0.0.0/8", "172.16.0.0/12",
                  "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10")
    ]
    f = admin_default_filter()
    assert f.rules == ADMIN_DEFAULT_RULES and f.default == "deny"


# --------------------------------------------------------------------------
# serialisation


def test_to_dict():
    assert Rule("allow", "10.0.0.0/8").to_dict() == {"action": "allow", "match": "10.0.0.0/8"}
    assert Rule("deny", " ANY ", "scanners").to_dict() == {
        "action": "deny", "match": "any", "note": "scanners"
    }


@pytest.mark.parametrize(
    "rule",
    [Rule("allow", "10.0.0.0/8"), Rule("deny", "2001:db8::1-2001:db8::ff", "lab"),
     Rule("allow-always", "any", "office"), Rule("allow", "fe80::/10")],
)
def test_dict_round_trip(rule):
    assert Rule.from_dict(rule.to_dict()) == rule


def test_from_dict_accepts_messy_input():
    assert Rule.from_dict({"action": "DENY", "match": "10.0.0.1 - 10.0.0.2", "note": ""}) == (
        Rule("deny", "10.0.0.1-10.0.0.2")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"match": "any"}, "rule is missing 'action'"),
        ({"action": "allow"}, "rule is missing 'match'"),
        ({"action": "allow", "match": "any", "port": 22}, "rule has unknown key 'port'"),
        ({"action": "allow", "match": "any", "a": 1, "b": 2}, "rule has unknown keys 'a', 'b'"),
        ({"action": 1, "match": "any"}, "rule 'action' must be text, not int"),
        ({"action": "allow", "match": ["10.0.0.0/8"]}, "rule 'match' must be text, not list"),
        ({"action": "allow", "match": "any", "note": None}, "rule 'note' must be text, not NoneType"),
        ({"action": "permit", "match": "any"}, "unknown action 'permit'"),
        ({"action": "allow", "match": "10.0.0.1/8"}, "did you mean 10.0.0.0/8?"),
        (["allow", "any"], "a rule must be a table with action and match, not list"),
    ],
)
def test_from_dict_errors(data, message):
    with pytest.raises(IpFilterError) as info:
        Rule.from_dict(data)
    assert message in str(info.value)


def test_rules_and_filters_survive_copy_and_pickle():
    f = IpFilter(rules=(Rule("deny", "10.0.0.1"), Rule("allow", "10.0.0.0/8", "lan")))
    for clone in (copy.deepcopy(f), pickle.loads(pickle.dumps(f))):
        assert clone == f
        assert clone.decide("10.0.0.1").rule_index == 0
        assert clone.decide("10.0.0.2").rule_index == 1
        assert clone.rules[1].matches("10.2.3.4")


# --------------------------------------------------------------------------
# property tests against an oracle built directly on ipaddress

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1
# Small neighbourhoods make overlaps and boundary hits likely.
V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))

v4_ints = st.one_of(
    st.integers(V4_BASE, V4_BASE + 600),
    st.integers(0, V4_MAX),
    st.sampled_from([0, V4_MAX]),
)
v6_ints = st.one_of(
    st.integers(V6_BASE, V6_BASE + 600),
    st.integers(0, V6_MAX),
    st.sampled_from([0, 1, V6_MAX]),
).filter(lambda n: not (0xFFFF << 32) <= n <= (0xFFFF << 32 | 0xFFFFFFFF))

v4_addrs = v4_ints.map(ipaddress.IPv4Address)
v6_addrs = v6_ints.map(ipaddress.IPv6Address)
any_addr = st.one_of(v4_addrs, v6_addrs)


def _text_variants(addr):
    """Equivalent spellings of one address."""
    variants = [str(addr)]
    if addr.version == 6:
        variants += [str(addr).upper(), addr.exploded]
    return st.sampled_from(variants)


@st.composite
def specs(draw):
    """(oracle_matcher, match_text) for one random rule."""
    kind = draw(st.sampled_from(["single", "cidr", "range", "any"]))
    if kind == "any":
        return ("any",), draw(st.sampled_from(["any", "ANY", " any "]))
    addr = draw(any_addr)
    if kind == "single":
        return ("addr", addr), draw(_text_variants(addr))
    if kind == "cidr":
        max_prefix = 32 if addr.version == 4 else 128
        prefix = draw(st.one_of(
            st.integers(0, max_prefix), st.integers(max(0, max_prefix - 12), max_prefix)
        ))
        network = ipaddress.ip_network((addr, prefix), strict=False)
        if network.version == 6 and network.subnet_of(ipaddress.ip_network("::ffff:0:0/96")):
            network = ipaddress.ip_network("2001:db8::/32")
        text = draw(_text_variants(network.network_address)) + "/" + str(prefix)
        return ("net", network), text
    other = draw(v4_addrs if addr.version == 4 else v6_addrs)
    if addr.version == 4 and draw(st.booleans()):
        other = ipaddress.IPv4Address(min(V4_MAX, int(addr) + draw(st.integers(0, 40))))
    lo, hi = sorted((addr, other))
    sep = draw(st.sampled_from(["-", " - ", "- ", " -"]))
    return ("range", lo, hi), draw(_text_variants(lo)) + sep + draw(_text_variants(hi))


rule_specs = st.tuples(specs(), st.sampled_from(ACTIONS), st.sampled_from(["", "note"]))


@st.composite
def peers(draw):
    """(text_or_object, oracle_address) for one peer."""
    addr = draw(any_addr)
    form = draw(st.sampled_from(["text", "object", "mapped", "scoped"]))
    if form == "object":
        return addr, addr
    if form == "mapped" and addr.version == 4:
        return "::ffff:" + str(addr), addr
    if form == "scoped" and addr.version == 6:
        return str(addr) + "%" + draw(st.sampled_from(["eth0", "3", "en0"])), addr
    return str(addr), addr


def oracle_matches(matcher, peer):
    if matcher[0] == "any":
        return True
    if matcher[0] == "addr":
        return peer == matcher[1]
    if matcher[0] == "net":
        return peer in matcher[1]
    _, lo, hi = matcher
    return peer.version == lo.version and lo <= peer <= hi


def oracle_peer(text_or_obj):
    """Independently normalise a peer the way the design says."""
    if isinstance(text_or_obj, str):
        addr = ipaddress.ip_address(text_or_obj.split("%")[0])
    else:
        addr = text_or_obj
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@settings(deadline=None)
@given(
    rules=st.lists(rule_specs, max_size=12),
    default=st.sampled_from(["allow", "deny"]),
    peer_list=st.lists(peers(), min_size=1, max_size=8),
)
def test_decide_agrees_with_oracle(rules, default, peer_list):
    f = IpFilter(rules=tuple(Rule(a, text, n) for (_, text), a, n in rules), default=default)
    for given_peer, expected_peer in peer_list:
        assert oracle_peer(given_peer) == expected_peer
        expected_index = next(
            (i for i, ((m, _), _, _) in enumerate(rules) if oracle_matches(m, expected_peer)),
            None,
        )
        d = f.decide(given_peer)
        assert d.rule_index == expected_index
        if expected_index is None:
            assert d.action == default and d.rule is None
        else:
            assert d.action == rules[expected_index][1]
            assert d.rule is f.rules[expected_index]
        assert d.allowed == (d.action in ("allow", "allow-always"))
        assert d.exempt_from_ban == (d.action == "allow-always")
        for i, ((m, _), _, _) in enumerate(rules):
            assert f.rules[i].matches(given_peer) == oracle_matches(m, expected_peer)


@settings(deadline=None)
@given(spec=rule_specs)
def test_rule_round_trips(spec):
    (_, text), action, note = spec
    rule = Rule(action, text, note)
    assert Rule.from_dict(rule.to_dict()) == rule
    # Canonical text is stable and does not change the rule.
    again = Rule(action, rule.match, note)
    assert again == rule and again.match == rule.match
    assert rule.match == rule.match.strip() and " " not in rule.match


@settings(deadline=None)
@given(spec=specs(), peer=peers())
def test_spellings_agree(spec, peer):
    """Every spelling of a match gives the same rule and the same verdict."""
    matcher, text = spec
    canonical = Rule("allow", text)
    if matcher[0] == "addr":
        alternatives = [matcher[1].exploded, str(matcher[1])]
    elif matcher[0] == "net":
        alternatives = [str(matcher[1]), matcher[1].with_prefixlen]
        if matcher[1].version == 4:
            alternatives.append(matcher[1].with_netmask)
    elif matcher[0] == "range":
        alternatives = [f"{matcher[1]}-{matcher[2]}", f"{matcher[1].exploded} - {matcher[2].exploded}"]
    else:
        alternatives = ["any", "Any"]
    for alt in alternatives:
        assert Rule("allow", alt) == canonical
    assert canonical.matches(peer[0]) == oracle_matches(matcher, peer[1])
