"""Line framing and message checks shared by both ends of the admin protocol."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.protocol.rpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    PARSE_ERROR,
    LineSplitter,
    Oversize,
    Params,
    RpcError,
    encode,
    parse_message,
    request,
)


def test_lines_split_across_chunks() -> None:
    s = LineSplitter(limit=100)
    assert s.feed(b'{"a"') == []
    assert s.feed(b':1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert s.feed(b":3}\n") == [b'{"c":3}']
    assert s.pending == 0


def test_oversize_line_is_reported_once_and_not_buffered() -> None:
    s = LineSplitter(limit=10)
    out = s.feed(b"x" * 8)
    assert out == []
    out = s.feed(b"y" * 8)  # now 16 > 10: reported at once
    assert out == [Oversize(16)]
    assert s.pending == 0
    assert s.feed(b"z" * 1000) == []  # still discarding, nothing kept
    assert s.pending == 0
    assert s.feed(b"zz\nok\n") == [b"ok"]


def test_a_line_of_exactly_the_limit_passes() -> None:
    s = LineSplitter(limit=5)
    assert s.feed(b"12345\n123456\n") == [b"12345", Oversize(6)]


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       st.integers(1, 17))
def test_any_chunking_gives_the_same_lines(lines: list[bytes], chunk: int) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    s = LineSplitter(limit=1000)
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out.extend(s.feed(stream[i:i + chunk]))  # type: ignore[arg-type]
    assert out == lines


@pytest.mark.parametrize("line, code, words", [
    (b"{nope", PARSE_ERROR, "malformed JSON"),
    (b"\xff", PARSE_ERROR, "UTF-8"),
    (b"[1]", INVALID_REQUEST, "JSON object"),
    (b'{"id": 1}', INVALID_REQUEST, "jsonrpc"),
])
def test_parse_message_errors(line: bytes, code: int, words: str) -> None:
    with pytest.raises(RpcError) as err:
        parse_message(line)
    assert err.value.code == code and words in err.value.message


def test_encode_is_one_line_and_refuses_oversize() -> None:
    line = encode(request(1, "node.info", {"text": "a\nb"}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["params"]["text"] == "a\nb"
    with pytest.raises(RpcError) as err:
        encode({"x": "y" * (16 * 1024 * 1024)})
    assert err.value.code == MESSAGE_TOO_LARGE


def test_params_reader() -> None:
    p = Params({"site": "admin", "n": 3, "flag": True})
    assert p.get("site", str) == "admin"
    assert p.get("n", int) == 3
    assert p.get("missing", str, "dflt") == "dflt"
    with pytest.raises(RpcError) as err:
        p.get("flag", int)  # true is not a number
    assert err.value.code == INVALID_PARAMS and err.value.data == {"field": "flag"}
    with pytest.raises(RpcError, match="missing field 'x'"):
        Params({}).get("x", str)
    p2 = Params({"a": 1, "zz": 2})
    p2.get("a", int)
    with pytest.raises(RpcError, match="unknown field 'zz'"):
        p2.done()
    with pytest.raises(RpcError, match="object"):
        Params([1, 2])


def test_error_round_trip() -> None:
    err = RpcError(-32010, "locked out", {"address": "10.0.0.1"})
    again = RpcError.from_dict(err.to_dict())
    assert (again.code, again.message, again.data, again.name) == (
        -32010, "locked out", {"address": "10.0.0.1"}, "LOCKOUT")
