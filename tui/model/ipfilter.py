"""Per-site IP allow/deny filtering.

A site has an ordered list of :class:`Rule` objects and a default action.  The
first rule whose ``match`` covers the peer address decides; when none does the
default applies.  ``allow-always`` allows the peer and also exempts it from
autoban.

A rule's ``match`` is one of:

* a single address: ``10.1.2.3``, ``2001:db8::1``
* a CIDR block: ``10.0.0.0/8``, ``fe80::/10`` (IPv4 netmasks such as
  ``10.0.0.0/255.0.0.0`` are accepted and rewritten as a prefix length)
* an inclusive range: ``10.0.0.1-10.0.0.9`` (spaces around ``-`` are fine)
* ``any``: every IPv4 and IPv6 address

Peer addresses are normalised before matching: an IPv4-mapped IPv6 address
(``::ffff:1.2.3.4``) is judged as the IPv4 address, and an IPv6 zone
(``fe80::1%eth0``) is dropped.  Rules written with IPv4-mapped addresses are
turned into the equivalent IPv4 rule so that they can match.  Rules may not
carry a zone, because peers are judged without one.

Every rule is parsed once into an integer span, so :meth:`IpFilter.decide`
(run on every accepted connection) is a linear scan comparing integers.

This module is pure: it does no I/O and depends only on the standard library.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

__all__ = [
    "ACTIONS",
    "ADMIN_DEFAULT_RULES",
    "Decision",
    "IpFilter",
    "IpFilterError",
    "Rule",
    "admin_default_filter",
    "parse_address",
]

ACTIONS = ("allow", "deny", "allow-always")
DEFAULT_ACTIONS = ("allow", "deny")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_MAX_PREFIX = {4: 32, 6: 128}
_MAX_INT = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
# ::ffff:0:0/96, the IPv4-mapped block.
_MAPPED_FIRST = 0xFFFF << 32
_MAPPED_LAST = _MAPPED_FIRST | 0xFFFFFFFF

_RULE_KEYS = ("action", "match", "note")


class IpFilterError(ValueError):
    """A rule, filter or address is malformed.

    The message is a single sentence meant to be shown to a person.
    """


# --------------------------------------------------------------------------
# addresses


def _type_name(value: object) -> str:
    return type(value).__name__


def _strip_zone(addr: IPAddress) -> IPAddress:
    if addr.version == 6 and addr.scope_id is not None:
        return ipaddress.IPv6Address(int(addr))
    return addr


def _unmap(addr: IPAddress) -> IPAddress:
    if addr.version == 6:
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return mapped
    return addr


def parse_address(text: object) -> IPAddress:
    """Parse a peer address for judging against rules.

    Accepts text or an ``ipaddress`` address object.  Surrounding whitespace
    is ignored, an IPv6 zone (``%eth0``) is dropped and an IPv4-mapped IPv6
    address is returned as the IPv4 address.  Raises :class:`IpFilterError`
    for anything that is not an IP address.
    """
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        addr: IPAddress = text
    elif isinstance(text, str):
        try:
            addr = ipaddress.ip_address(text.strip())
        except ValueError:
            raise IpFilterError(f"{text!r} is not an IP address") from None
    else:
        raise IpFilterError(
            f"expected an IP address as text, got {_type_name(text)} {text!r}"
        )
    return _unmap(_strip_zone(addr))


def _address_key(addr: IPAddress) -> tuple[int, int]:
    """``(version, integer)`` for a parsed peer address."""
    return addr.version, int(addr)


# --------------------------------------------------------------------------
# match text

_Span = Union[tuple[int, int, int], None]  # (version, first, last); None = any


def _not_a_match(text: str) -> IpFilterError:
    return IpFilterError(f"{text!r} is not an IP address, CIDR, range or 'any'")


def _parse_plain_address(part: str, whole: str) -> IPAddress:
    """Parse one address inside a match; no zones allowed."""
    if "%" in part:
        bare = part.split("%", 1)[0]
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            raise _not_a_match(whole) from None
        raise IpFilterError(
            f"{whole!r} has an interface zone; rules match addresses without "
            f"one, so write {bare.lower()} instead"
        )
    try:
        return ipaddress.ip_address(part)
    except ValueError:
        raise _not_a_match(whole) from None


def _parse_single(text: str) -> tuple[_Span, str]:
    addr = _unmap(_parse_plain_address(text, text))
    n = int(addr)
    return (addr.version, n, n), str(addr)


def _parse_cidr(text: str) -> tuple[_Span, str]:
    addr_part, _, prefix_part = text.partition("/")
    addr_part, prefix_part = addr_part.strip(), prefix_part.strip()
    if "/" in prefix_part or not addr_part or not prefix_part:
        raise _not_a_match(text)
    addr = _parse_plain_address(addr_part, text)
    version = addr.version
    max_prefix = _MAX_PREFIX[version]

    if prefix_part.isascii() and prefix_part.isdigit():
        prefix = int(prefix_part)
        if prefix > max_prefix:
            raise IpFilterError(
                f"{text!r} has prefix length {prefix}, but IPv{version} "
                f"allows at most {max_prefix}"
            )
    elif version == 4:
        # Dotted netmask or hostmask, e.g. 10.0.0.0/255.0.0.0.
        try:
            prefix = ipaddress.IPv4Network(
                f"0.0.0.0/{prefix_part}", strict=False
            ).prefixlen
        except ValueError:
            raise IpFilterError(
                f"{text!r} has an invalid prefix length or netmask "
                f"{prefix_part!r}"
            ) from None
    else:
        raise IpFilterError(
            f"{text!r} has an invalid prefix length {prefix_part!r}; "
            f"use a number from 0 to {max_prefix}"
        )

    network = ipaddress.ip_network((addr, prefix), strict=False)
    if network.network_address != addr:
        raise IpFilterError(
            f"{text!r} has host bits set; did you mean {network}?"
        )

    first, last = int(network.network_address), int(network.broadcast_address)
    if (
        version == 6
        and prefix >= 96
        and _MAPPED_FIRST <= first
        and last <= _MAPPED_LAST
    ):
        network = ipaddress.IPv4Network(
            (first & 0xFFFFFFFF, prefix - 96)
        )
        version = 4
        first, last = int(network.network_address), int(network.broadcast_address)
    return (version, first, last), str(network)


def _parse_range(text: str) -> tuple[_Span, str]:
    start_text, _, end_text = text.partition("-")
    start_text, end_text = start_text.strip(), end_text.strip()
    if "-" in end_text:
        raise _not_a_match(text)
    if not start_text or not end_text:
        raise IpFilterError(
            f"range {text!r} needs an address on both sides of '-'"
        )
    for part in (start_text, end_text):
        if "/" in part:
            raise IpFilterError(
                f"range {text!r} must join two single addresses, not CIDRs"
            )
    start = _parse_plain_address(start_text, text)
    end = _parse_plain_address(end_text, text)
    if start.version == end.version == 6:
        start_v4, end_v4 = start.ipv4_mapped, end.ipv4_mapped
        if start_v4 is not None and end_v4 is not None:
            start, end = start_v4, end_v4
    if start.version != end.version:
        raise IpFilterError(f"range {text!r} mixes IPv4 and IPv6")
    if int(end) < int(start):
        raise IpFilterError(f"range {text!r} ends before it starts")
    return (start.version, int(start), int(end)), f"{start}-{end}"


def _parse_match(match: object) -> tuple[_Span, str]:
    """Return ``(span, canonical_text)`` for a rule's match text."""
    if not isinstance(match, str):
        raise IpFilterError(
            f"a rule's match must be text, not {_type_name(match)} {match!r}"
        )
    return _parse_match_text(match)


# Every version of a cluster document repeats nearly all of its rules: parsing each match
# text once per process, not once per document, makes validating a pushed document with
# thousands of rules several times cheaper. The result is immutable; errors are not cached.
@functools.lru_cache(maxsize=16384)
def _parse_match_text(match: str) -> tuple[_Span, str]:
    text = match.strip()
    if not text:
        raise IpFilterError(
            "a rule's match is empty; give an IP address, CIDR, range or 'any'"
        )
    if text.lower() == "any":
        return None, "any"
    if "/" in text:
        if "-" in text:
            raise IpFilterError(
                f"range {text!r} must join two single addresses, not CIDRs"
            )
        return _parse_cidr(text)
    if "-" in text:
        return _parse_range(text)
    return _parse_single(text)


def _normalise_action(action: object, allowed: tuple[str, ...]) -> str | None:
    if isinstance(action, str):
        cleaned = action.strip().lower()
        if cleaned in allowed:
            return cleaned
    return None


# --------------------------------------------------------------------------
# rules and decisions


@dataclass(frozen=True)
class Rule:
    """One line of a site's IP filter.

    ``match`` is normalised to canonical text on construction, so two rules
    written differently but with the same form and span compare equal (for
    example ``"10.0.0.0/255.0.0.0"`` becomes ``"10.0.0.0/8"`` and
    ``"10.0.0.1 - 10.0.0.9"`` becomes ``"10.0.0.1-10.0.0.9"``).
    """

    action: str
    match: str
    note: str = ""

    def __post_init__(self) -> None:
        action = _normalise_action(self.action, ACTIONS)
        if action is None:
            raise IpFilterError(
                f"unknown action {self.action!r}; use allow, deny or allow-always"
            )
        if not isinstance(self.note, str):
            raise IpFilterError(
                f"a rule's note must be text, not {_type_name(self.note)} "
                f"{self.note!r}"
            )
        span, canonical = _parse_match(self.match)
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "match", canonical)
        object.__setattr__(self, "_span", span)

    def matches(self, address: object) -> bool:
        """Whether this rule covers ``address`` (text or ``ipaddress`` object)."""
        span = self._span  # type: ignore[attr-defined]
        if span is None:
            parse_address(address)  # still reject malformed input
            return True
        version, n = _address_key(parse_address(address))
        return version == span[0] and span[1] <= n <= span[2]

    def to_dict(self) -> dict:
        out = {"action": self.action, "match": self.match}
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, d: object) -> "Rule":
        if not isinstance(d, Mapping):
            raise IpFilterError(
                f"a rule must be a table with action and match, not "
                f"{_type_name(d)}"
            )
        unknown = sorted(str(k) for k in d if k not in _RULE_KEYS)
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            raise IpFilterError(
                f"rule has unknown key{'s' if len(unknown) > 1 else ''} {names}; "
                f"allowed keys are action, match and note"
            )
        for key in ("action", "match"):
            if key not in d:
                raise IpFilterError(f"rule is missing {key!r}")
        for key in _RULE_KEYS:
            if key in d and not isinstance(d[key], str):
                raise IpFilterError(
                    f"rule {key!r} must be text, not {_type_name(d[key])} "
                    f"{d[key]!r}"
                )
        return cls(action=d["action"], match=d["match"], note=d.get("note", ""))

    def __str__(self) -> str:
        return f"{self.action} {self.match}"


@dataclass(frozen=True)
class Decision:
    """The outcome of judging one address."""

    allowed: bool
    action: str
    rule_index: int | None
    rule: Rule | None

    @property
    def exempt_from_ban(self) -> bool:
        return self.action == "allow-always"

    def describe(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        if self.rule_index is None or self.rule is None:
            return f"{verdict} by the default action ({self.action})"
        return f"{verdict} by rule {self.rule_index + 1} ({self.rule})"


def _decision(action: str, index: int | None, rule: Rule | None) -> Decision:
    return Decision(
        allowed=action in ("allow", "allow-always"),
        action=action,
        rule_index=index,
        rule=rule,
    )


@dataclass(frozen=True)
class IpFilter:
    """An ordered rule list plus a default action; first match wins."""

    rules: tuple[Rule, ...] = ()
    default: str = "deny"

    def __post_init__(self) -> None:
        if isinstance(self.rules, (str, bytes, Mapping)):
            raise IpFilterError(
                f"rules must be a sequence of Rule, not {_type_name(self.rules)}"
            )
        try:
            rules = tuple(self.rules)
        except TypeError:
            raise IpFilterError(
                f"rules must be a sequence of Rule, not {_type_name(self.rules)}"
            ) from None
        for i, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise IpFilterError(
                    f"rule {i + 1} is a {_type_name(rule)}, not a Rule"
                )
        default = _normalise_action(self.default, DEFAULT_ACTIONS)
        if default is None:
            raise IpFilterError(
                f"default action must be allow or deny, not {self.default!r}"
            )
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "default", default)

        # Per-family lists of (first, last, decision) in rule order; "any"
        # rules appear in both with the family's full span.
        by_version: dict[int, list[tuple[int, int, Decision]]] = {4: [], 6: []}
        for i, rule in enumerate(rules):
            decision = _decision(rule.action, i, rule)
            span = rule._span  # type: ignore[attr-defined]
            if span is None:
                for version in (4, 6):
                    by_version[version].append((0, _MAX_INT[version], decision))
            else:
                by_version[span[0]].append((span[1], span[2], decision))
        object.__setattr__(
            self, "_spans", {v: tuple(spans) for v, spans in by_version.items()}
        )
        object.__setattr__(self, "_default_decision", _decision(default, None, None))

    def decide(self, address: object) -> Decision:
        """Judge ``address``; raises :class:`IpFilterError` if it is malformed."""
        addr = parse_address(address)
        n = int(addr)
        for first, last, decision in self._spans[addr.version]:  # type: ignore[attr-defined]
            if first <= n <= last:
                return decision
        return self._default_decision  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# admin defaults

ADMIN_DEFAULT_RULES: tuple[Rule, ...] = tuple(
    Rule("allow", match)
    for match in (
        "127.0.0.0/8",  # IPv4 loopback
        "::1",  # IPv6 loopback
        "10.0.0.0/8",  # private networks
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # IPv4 link-local
        "fc00::/7",  # IPv6 unique local
        "fe80::/10",  # IPv6 link-local
    )
)


def admin_default_filter() -> IpFilter:
    """The admin listener's filter: loopback and private networks only."""
    return IpFilter(rules=ADMIN_DEFAULT_RULES, default="deny")
