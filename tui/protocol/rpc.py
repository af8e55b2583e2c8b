"""The admin protocol shared by both ends: JSON-RPC 2.0, one UTF-8 JSON object per line.

It runs inside the SSH subsystem ``mft-admin`` on port 14983. Messages larger than
``MAX_MESSAGE_BYTES`` are refused by the reader without buffering them whole, so a
hostile or broken peer cannot make either end hold more than one limit's worth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
SUBSYSTEM = "mft-admin"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
READ_CHUNK = 256 * 1024

# JSON-RPC 2.0 codes, then mft's own in the implementation-defined range.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MESSAGE_TOO_LARGE = -32001
LOCKOUT = -32010
CONFLICT = -32011
NOT_FOUND = -32012
NOT_PRIMARY = -32014
STALE_EPOCH = -32015
STALE_VERSION = -32016
ALREADY_MEMBER = -32017
HASH_MISMATCH = -32018
FORBIDDEN = -32019
REGISTRATION_FAILED = -32020
PRIMARY_ALIVE = -32021
PROMOTION_FAILED = -32022

ERROR_NAMES = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_REQUEST: "INVALID_REQUEST",
    METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
    INVALID_PARAMS: "INVALID_PARAMS",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    MESSAGE_TOO_LARGE: "MESSAGE_TOO_LARGE",
    LOCKOUT: "LOCKOUT",
    CONFLICT: "CONFLICT",
    NOT_FOUND: "NOT_FOUND",
    NOT_PRIMARY: "NOT_PRIMARY",
    STALE_EPOCH: "STALE_EPOCH",
    STALE_VERSION: "STALE_VERSION",
    ALREADY_MEMBER: "ALREADY_MEMBER",
    HASH_MISMATCH: "HASH_MISMATCH",
    FORBIDDEN: "FORBIDDEN",
    REGISTRATION_FAILED: "REGISTRATION_FAILED",
    PRIMARY_ALIVE: "PRIMARY_ALIVE",
    PROMOTION_FAILED: "PROMOTION_FAILED",
}


class RpcError(Exception):
    """An error either end can raise; it travels as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, str(self.code))

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error["data"] = {"name": self.name, **self.data}
        return error

    @classmethod
    def from_dict(cls, error: Any) -> "RpcError":
        if not isinstance(error, dict):
            return cls(INTERNAL_ERROR, f"malformed error object: {error!r}")
        data = error.get("data")
        data = {k: v for k, v in data.items() if k != "name"} if isinstance(data, dict) else {}
        return cls(int(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")), data)


# One encoder for every message: json.dumps with options builds a new one on each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(message: dict[str, Any]) -> bytes:
    body = _ENCODER.encode(message).encode("utf-8")
    # The limit counts the message without its newline, as LineSplitter does.
    if len(body) > MAX_MESSAGE_BYTES:
        raise RpcError(MESSAGE_TOO_LARGE, f"message of {len(body)} bytes exceeds the "
                                          f"{MAX_MESSAGE_BYTES}-byte limit")
    return body + b"\n"


class Prepared(str):
    """Params already encoded as JSON: one large document sent to many peers is encoded
    once, not once per peer."""


def prepare(params: dict[str, Any]) -> Prepared:
    return Prepared(_ENCODER.encode(params))


def encode_request(msg_id: int, method: str, params: dict[str, Any] | Prepared | None) -> bytes:
    if not isinstance(params, Prepared):
        return encode(request(msg_id, method, params))
    head = _ENCODER.encode({"jsonrpc": "2.0", "id": msg_id, "method": method})
    body = f'{head[:-1]},"params":{params}}}'.encode("utf-8")
    if len(body) > MAX_MESSAGE_BYTES:
        raise RpcError(MESSAGE_TOO_LARGE, f"message of {len(body)} bytes exceeds the "
                                          f"{MAX_MESSAGE_BYTES}-byte limit")
    return body + b"\n"


def request(msg_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params or {}}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def result_response(msg_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_response(msg_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": error.to_dict()}


@dataclass(frozen=True)
class Oversize:
    """Stands in for a line that exceeded the limit and was discarded."""

    size: int


class LineSplitter:
    """Splits a byte stream into lines, discarding (not buffering) any line over the limit."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES):
        self.limit = limit
        self._buf = bytearray()
        self._discarded = 0  # bytes dropped so far of an oversize line; 0 when not discarding

    def feed(self, chunk: bytes) -> list[bytes | Oversize]:
        out: list[bytes | Oversize] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if self._discarded:
                self._discarded += len(piece)
            elif len(self._buf) + len(piece) > self.limit:
                # Report at once rather than at the newline, which may never come.
                out.append(Oversize(len(self._buf) + len(piece)))
                self._discarded = len(self._buf) + len(piece)
                self._buf.clear()
            else:
                self._buf += piece
            if end < 0:
                return out
            if not self._discarded:
                out.append(bytes(self._buf))
            self._buf.clear()
            self._discarded = 0
            start = end + 1

    @property
    def pending(self) -> int:
        return len(self._buf)


def parse_message(line: bytes) -> dict[str, Any]:
    """Decode one line; raise RpcError(PARSE_ERROR / INVALID_REQUEST) with a precise reason.

    An INVALID_REQUEST carries the message's ``id`` (when it has one) in ``data["id"]``
    so the answer can still be matched to the request.
    """
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"message is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise RpcError(PARSE_ERROR, "JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "a message must be a JSON object")
    if message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'a message must have "jsonrpc": "2.0"',
                       {"id": message.get("id")})
    return message


class Params:
    """Reads a request's params with INVALID_PARAMS errors that name the field."""

    _TYPES = {str: "a string", int: "an integer", bool: "true or false", list: "an array",
              dict: "an object"}

    def __init__(self, params: Any):
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object with named fields")
        self._params = params
        self._seen: set[str] = set()

    def get(self, name: str, kind: type, default: Any = ..., ) -> Any:
        self._seen.add(name)
        if name not in self._params:
            if default is ...:
                raise RpcError(INVALID_PARAMS, f"missing field {name!r}", {"field": name})
            return default
        value = self._params[name]
        wrong_bool = kind is int and isinstance(value, bool)
        if not isinstance(value, kind) or wrong_bool:
            raise RpcError(INVALID_PARAMS, f"field {name!r} must be {self._TYPES[kind]}",
                           {"field": name})
        return value

    def done(self) -> None:
        unknown = sorted(set(self._params) - self._seen)
        if unknown:
            raise RpcError(INVALID_PARAMS, f"unknown field {unknown[0]!r}", {"field": unknown[0]})
