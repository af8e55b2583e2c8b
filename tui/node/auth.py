"""Password verification off the event loop, in a pool with a hard cap on queued work."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ..model.passwords import verify_password


class PasswordVerifier:
    """Runs scrypt in at most ``workers`` threads; beyond ``max_pending`` a login simply fails.

    A flood of password attempts must cost the node a bounded amount of CPU and memory,
    and never stall the event loop that serves everyone else.
    """

    def __init__(self, workers: int = 2, max_pending: int = 64):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrypt")
        self._slots = asyncio.BoundedSemaphore(max_pending)
        self.max_pending = max_pending

    async def verify(self, password: str, encoded: str) -> bool:
        if self._slots.locked():
            return False
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, verify_password, password, encoded)

    @property
    def in_use(self) -> int:
        """Password checks running or waiting for a thread now."""
        return self.max_pending - self._slots._value

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
