"""Principals of recently checked credentials, so that a request need not check its credential in full again.

Entries are keyed on a digest of the credential the request authenticates with (`api.security.credential_of`,
the precedence `authenticate` uses), never on a header that may not be the one used. An entry serves for at
most `CACHE_SECONDS` and never past its credential's expiry; before it serves, the caller re-reads the
account's revocation epoch and state (`api.security.still_valid`), so a revoked key, a logout or a
deactivation takes effect at once, in every process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from api.principal import Principal
from storage.tables import utcnow

CACHE_SECONDS = 5.0
CACHE_SIZE = 10_000


class PrincipalCache:
    """A bounded map from credential digest to principal, each entry with a deadline (monotonic clock)."""

    def __init__(self, *, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.size = size
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Principal | None:
        """The principal cached for `key`, unless its time is up."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, principal: Principal) -> None:
        """Remember `principal` for `key` for `seconds`, or until its credential expires if that is sooner."""
        lifetime = self.seconds
        if principal.expires_at is not None:
            lifetime = min(lifetime, (principal.expires_at - utcnow()).total_seconds())
        if lifetime <= 0:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (self._clock() + lifetime, principal)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)
