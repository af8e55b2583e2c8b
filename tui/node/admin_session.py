"""One `mft-admin` subsystem channel: read requests, run methods, write answers.

Requests run concurrently (a slow call never holds up a quick one) up to a cap;
every answer is one line. A malformed or oversize message gets an error and the
channel carries on, so one bad client message never costs the admin the session.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import asyncssh

from ..protocol.rpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_MESSAGE_BYTES,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    READ_CHUNK,
    LineSplitter,
    Oversize,
    Params,
    RpcError,
    encode,
    error_response,
    notification,
    parse_message,
    result_response,
)
from .events import Subscriber
from .methods import METHODS, QUICK_METHODS, CallContext

log = logging.getLogger("mft.node")
METHOD_TIMEOUT_S = 120.0
MAX_IN_FLIGHT = 32
_CHANNEL_EVENTS = (asyncssh.BreakReceived, asyncssh.SignalReceived,
                   asyncssh.TerminalSizeChanged)
DRAIN_ABOVE_BYTES = 1024 * 1024
# Events wait in the subscriber's queue (bounded) rather than in the channel's buffer
# (unbounded) once this much is unsent: a console that stops reading then overflows its
# queue and is told to resync, instead of growing the node's memory.
EVENTS_BUFFER_BYTES = 256 * 1024
EVENT = "event"
RESYNC = "events.resync"


class AdminSession:
    def __init__(self, process: asyncssh.SSHServerProcess, ctx: CallContext):
        self.process = process
        self.ctx = replace(ctx, notify=self._notify, subscribe=self._subscribe)
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriber: Subscriber | None = None
        self._pump: asyncio.Task[None] | None = None

    async def run(self) -> None:
        splitter = LineSplitter(MAX_MESSAGE_BYTES)
        try:
            while True:
                try:
                    chunk = await self.process.stdin.read(READ_CHUNK)
                except _CHANNEL_EVENTS:
                    continue  # a break, signal or window change means nothing here
                if not chunk:
                    break
                for item in splitter.feed(chunk):
                    if isinstance(item, Oversize):
                        await self._send(error_response(None, RpcError(
                            MESSAGE_TOO_LARGE,
                            f"message exceeds the {MAX_MESSAGE_BYTES}-byte limit; discarded",
                        )))
                    elif item.strip():
                        await self._accept(item)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            pass
        except Exception:  # end this channel, never the admin's whole connection
            log.exception("%s: admin channel failed", self.ctx.state.node.name)
        finally:
            self._unsubscribe()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _subscribe(self, kinds: list[str] | None) -> int:
        """Stream events to this channel (one subscription per channel: a new one replaces
        the old)."""
        self._unsubscribe()
        events = self.ctx.state.events
        self._subscriber = events.subscribe(kinds)
        self._pump = asyncio.create_task(self._pump_events(self._subscriber))
        return events.last_seq

    def _unsubscribe(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _pump_events(self, sub: Subscriber) -> None:
        channel = self.process.channel
        # drain() waits only above the channel's high-water mark: make it ours.
        channel.set_write_buffer_limits(high=EVENTS_BUFFER_BYTES)
        try:
            # Let the subscribe answer go out first: events follow the snapshot.
            await asyncio.sleep(0)
            while True:
                await sub.ready.wait()
                dropped, events = sub.take()
                lines = [encode(notification(EVENT, event)) for event in events]
                if dropped:
                    lines.insert(0, encode(notification(RESYNC, {
                        "dropped": dropped, "seq": self.ctx.state.events.last_seq,
                        "reason": "events came faster than they were read; read "
                                  "cluster.status again"})))
                # One write for all that is waiting: a few SSH packets, not one per event.
                channel.write(b"".join(lines))
                if channel.get_write_buffer_size() > EVENTS_BUFFER_BYTES:
                    await self.process.stdout.drain()
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _accept(self, line: bytes) -> None:
        try:
            message = parse_message(line)
        except RpcError as exc:
            # Malformed: answer at once, with the id when one could be read.
            await self._send(error_response(exc.data.pop("id", None), exc))
            return
        if message.get("method") in QUICK_METHODS:
            await self._call(message, timeout=None)  # cannot hang: it never waits
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._call(message))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _call(self, message: dict[str, Any],
                    timeout: float | None = METHOD_TIMEOUT_S) -> None:
        msg_id = message.get("id")
        # JSON-RPC: a message without an id is a notification and gets no answer,
        # not even an error.
        is_notification = "id" not in message
        try:
            name = message.get("method")
            if not isinstance(name, str):
                raise RpcError(INVALID_REQUEST, 'a request must have a string "method"')
            fn = METHODS.get(name)
            if fn is None:
                raise RpcError(METHOD_NOT_FOUND, f"no method named {name!r}")
            params = Params(message.get("params"))
            if timeout is None:
                result = await fn(self.ctx, params)
            else:  # asyncio.timeout, not wait_for: no extra task and loop round per call
                async with asyncio.timeout(timeout):
                    result = await fn(self.ctx, params)
            if not is_notification:
                await self._send(result_response(msg_id, result))
        except RpcError as exc:
            await self._answer_error(is_notification, msg_id, exc)
        except TimeoutError:
            await self._answer_error(is_notification, msg_id, RpcError(
                INTERNAL_ERROR, f"the call did not finish within {timeout:.0f} s"))
        except Exception:  # a bug in a method must not end the session
            log.exception("%s: method failed", self.ctx.state.node.name)
            await self._answer_error(is_notification, msg_id, RpcError(
                INTERNAL_ERROR, "internal error on the node; see the node's log"))

    async def _answer_error(self, is_notification: bool, msg_id: Any, error: RpcError) -> None:
        if not is_notification:
            await self._send(error_response(msg_id, error))

    async def _notify(self, method: str, params: dict[str, Any]) -> None:
        await self._send(notification(method, params))

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            self.process.channel.write(encode(message))
            # Only wait when the peer is not keeping up; a small answer needs no loop round.
            if self.process.channel.get_write_buffer_size() > DRAIN_ABOVE_BYTES:
                await self.process.stdout.drain()
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            pass
