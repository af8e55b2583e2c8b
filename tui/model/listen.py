"""Listen and connect addresses as admins write them: 'HOST:PORT', '[v6]:PORT', a bare host."""

from __future__ import annotations


def parse_listen(text: str, default_port: int | None = None,
                 any_port: bool = False) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or, with a default port, a bare host.

    ``any_port`` admits port 0 (a listener on any free port, which the node logs).
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not HOST:PORT ('[' without a matching ']')")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:  # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r} has no port; use HOST:PORT")
        return host, default_port
    lowest = 0 if any_port else 1
    if not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} must be a number from {lowest} to 65535")
    return host, int(port_text)
