"""The roles Locard knows, defined here once: the account store, the API, its request models and the CLI take
their names from this module.

`Role` is a `StrEnum`: each member is the role's name as it is stored with an account, carried in a token and
written to the audit log ("investigator", ...), so members and plain names compare equal.

Separation of duties: an administrator manages accounts and holds none of the `CASE_DATA_ROLES`
(`storage.accounts.check_roles` refuses the combination for accounts, `api.security` for any principal).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    """A role of a Locard account (or of an OpenID Connect user, from the provider's roles claim)."""

    INVESTIGATOR = "investigator"  # works on the cases assigned to them
    FORENSIC_EXAMINER = "forensic_examiner"  # works on assigned cases; sees biometric detail (embeddings, minutiae)
    SUPERVISOR = "supervisor"  # sees every case and assigns people to them
    AUDITOR = "auditor"  # reads and verifies the audit log; never case data
    CASE_SYSTEM = "case_system"  # another system (a records management system) on its assigned cases, by API key
    ADMINISTRATOR = "administrator"  # accounts, API keys and assignments; never case data


# The members under short names, for `require_roles(SUPERVISOR)` and `principal.has(AUDITOR)`.
INVESTIGATOR = Role.INVESTIGATOR
FORENSIC_EXAMINER = Role.FORENSIC_EXAMINER
SUPERVISOR = Role.SUPERVISOR
AUDITOR = Role.AUDITOR
CASE_SYSTEM = Role.CASE_SYSTEM
ADMINISTRATOR = Role.ADMINISTRATOR

ROLES: tuple[Role, ...] = tuple(Role)
CASE_DATA_ROLES = (INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR, CASE_SYSTEM)  # never held with ADMINISTRATOR


def role_conflict(roles: Iterable[str]) -> list[str]:
    """The case-data roles held together with administrator, sorted (empty when the roles may be held together)."""
    held = set(roles)
    return sorted(str(role) for role in held & set(CASE_DATA_ROLES)) if ADMINISTRATOR in held else []
