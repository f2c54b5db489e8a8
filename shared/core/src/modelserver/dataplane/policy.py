"""What every request passes through, REST and gRPC alike: auth and limits.

Off by default and then free: with no tokens, no concurrency limit and no
timeout, ``admit`` is two comparisons and ``bounded`` awaits the call as is.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from ..errors import DeadlineExceeded, ServerBusy, Unauthenticated

logger = logging.getLogger(__name__)

T = TypeVar("T")


def load_tokens(token_file: str | None, env_var: str = "AUTH_TOKENS") -> list[bytes]:
    """Accepted bearer tokens: one per line of the file, and comma-separated in the env.

    Tokens are never logged; only their count is.
    """
    tokens: list[str] = []
    if token_file:
        text = Path(token_file).read_text(encoding="utf-8")
        tokens.extend(line.strip() for line in text.splitlines())
    tokens.extend(part.strip() for part in os.environ.get(env_var, "").split(","))
    found = [t.encode("utf-8") for t in tokens if t and not t.startswith("#")]
    if token_file and not found:
        raise ValueError(f"--auth_token_file {token_file} holds no token; refusing to start open")
    if found:
        logger.info("authentication on: %d token(s) accepted", len(found))
    return found


class RequestPolicy:
    """Authentication, the concurrency limit and the per-request timeout."""

    def __init__(
        self,
        tokens: list[bytes] | None = None,
        max_concurrent: int = 0,
        timeout_s: float = 0.0,
    ) -> None:
        self.tokens = tokens or []
        self.max_concurrent = max_concurrent
        self.timeout_s = timeout_s
        self.inflight = 0

    @property
    def auth_on(self) -> bool:
        return bool(self.tokens)

    def authenticate(self, authorization: str | bytes | None) -> None:
        """Raise Unauthenticated unless ``Authorization: Bearer <token>`` names a token.

        Every token is compared, in constant time, so the answer's timing does
        not tell how much of a guess was right or which token it was close to.
        """
        if not self.tokens:
            return
        if isinstance(authorization, str):
            authorization = authorization.encode("latin-1", errors="replace")
        presented = b""
        if authorization and authorization[:7].lower() == b"bearer ":
            presented = authorization[7:].strip()
        ok = False
        for token in self.tokens:
            ok |= hmac.compare_digest(presented, token)
        if not ok:
            raise Unauthenticated("Missing or invalid bearer token")

    def admit(self) -> None:
        """Count a request in; ServerBusy when the limit is reached. Pair with ``release``."""
        if self.max_concurrent and self.inflight >= self.max_concurrent:
            raise ServerBusy(
                f"Server busy: {self.inflight} requests in flight "
                f"(--max_concurrent_requests={self.max_concurrent})"
            )
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1

    def limit(self, deadline_s: float | None = None) -> float | None:
        """The request's time limit: the configured timeout or a shorter client deadline."""
        limit = self.timeout_s or None
        if deadline_s is not None and deadline_s > 0:
            limit = deadline_s if limit is None else min(limit, deadline_s)
        return limit

    @staticmethod
    async def bounded(work: Awaitable[T], deadline: float | None, limit: float | None) -> T:
        """Await ``work`` until ``deadline`` (event-loop time; None: no limit); 504 past it.

        ``asyncio.timeout_at`` cancels the request's own task when the limit
        runs out, without the extra task and future ``asyncio.wait_for`` costs
        every request. A predict that ran inline (proved fast) cannot be
        interrupted; if it still ended past the deadline, the answer is late
        and the request times out all the same.
        """
        if deadline is None:
            return await work
        try:
            async with asyncio.timeout_at(deadline):
                result = await work
        except TimeoutError:
            raise DeadlineExceeded(f"Request timed out after {limit:.3g}s") from None
        if asyncio.get_running_loop().time() > deadline:
            raise DeadlineExceeded(f"Request timed out after {limit:.3g}s")
        return result
