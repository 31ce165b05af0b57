"""Who is calling: the principal every route receives, and the roles Locard knows."""

from __future__ import annotations

from dataclasses import dataclass, field

INVESTIGATOR = "investigator"
FORENSIC_EXAMINER = "forensic_examiner"
SUPERVISOR = "supervisor"
AUDITOR = "auditor"
CASE_SYSTEM = "case_system"
ADMINISTRATOR = "administrator"
ROLES = (INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR, AUDITOR, CASE_SYSTEM, ADMINISTRATOR)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (password + token), a case system (API key) or an OpenID Connect user.

    `user_id` is the Locard account (None for an OpenID Connect user without one); case assignments are kept
    by user name, so an external user is assigned like a local one.
    """

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    kind: str = "user"  # "user" | "api_key" | "oidc"
    user_id: str | None = None

    def has(self, *roles: str) -> bool:
        """Whether the principal holds any of `roles`."""
        return not self.roles.isdisjoint(roles)

    @property
    def role_list(self) -> list[str]:
        return sorted(self.roles)
