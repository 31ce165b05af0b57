"""Who is calling: the principal every route receives, and the roles it may hold (`storage.roles`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (password + token), a case system (API key) or an OpenID Connect user.

    `user_id` is the Locard account (None for an OpenID Connect user without one); case assignments are kept
    by user name, so an external user is assigned like a local one. `epoch` is that account's revocation epoch
    when the credential was checked, and `expires_at` when the credential expires (None: it does not); neither
    takes part in comparisons.
    """

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    kind: str = "user"  # "user" | "api_key" | "oidc"
    user_id: str | None = None
    epoch: int | None = field(default=None, compare=False)
    expires_at: dt.datetime | None = field(default=None, compare=False)

    def has(self, *roles: str) -> bool:
        """Whether the principal holds any of `roles`."""
        return not self.roles.isdisjoint(roles)

    @property
    def role_list(self) -> list[str]:
        return sorted(self.roles)
