"""`locard users`: accounts managed straight in the record store (the first administrator, a lost password).

    locard users add NAME --role ROLE [--role ...] [--display-name TEXT] [--password-stdin | --no-password]
    locard users roles NAME --set ROLE [ROLE ...]
    locard users password NAME [--password-stdin]
    locard users deactivate NAME
    locard users list

A password is asked twice on the terminal (not echoed) or, with --password-stdin, read from the first line of
standard input; never taken from an argument, which other users of the machine can read. The rules of the
API hold (password policy; no administrator with a case-data role). Each action, refused ones too, is written
to the audit log as done by `cli:<operating-system user>`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from locard.stack import with_stack_identity
from storage import accounts, audit
from storage.db import make_engine, migrate, session_factory, transaction
from storage.roles import ROLES
from storage.settings import Settings

Say = Callable[[str], None]
ACTIONS = ("add", "roles", "password", "deactivate", "list")
ROLE_NAMES = tuple(role.value for role in ROLES)  # plain names: argparse quotes its choices in usage errors


class UsersError(Exception):
    """A `locard users` command that cannot be carried out (the message says why)."""


@dataclass
class Outcome:
    """What one command did, for the audit log and the exit status."""

    resource_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def add_parser(sub: Any) -> None:
    """Add `users` and its actions to the CLI's subcommands (`sub` from `add_subparsers`)."""
    users = sub.add_parser("users", help="manage accounts in the record store (e.g. the first administrator)",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = users.add_subparsers(dest="users_action", required=True)
    add = actions.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", dest="roles", action="append", required=True, choices=ROLE_NAMES)
    add.add_argument("--display-name", default="")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    secret.add_argument("--no-password", action="store_true", help="no password (case systems: API keys)")
    roles = actions.add_parser("roles", help="replace an account's roles")
    roles.add_argument("name")
    roles.add_argument("--set", dest="roles", nargs="+", required=True, choices=ROLE_NAMES)
    password = actions.add_parser("password", help="set an account's password (its sessions end)")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    deactivate = actions.add_parser("deactivate", help="deactivate an account (its sessions and keys end)")
    deactivate.add_argument("name")
    actions.add_parser("list", help="list the accounts")


def read_password(*, from_stdin: bool) -> str:
    """The password from standard input's first line, or asked twice on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsersError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsersError("standard input is not a terminal: give the password on standard input with "
                         "--password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise UsersError("the two passwords differ")
    return first


def operating_system_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no password-database entry
        return "unknown"


def _user(session: Session, name: str) -> accounts.User:
    user = accounts.get_user_by_name(session, username=name)
    if user is None:
        raise UsersError(f"there is no user {name.strip().lower()!r}")
    return user


def _describe(user: accounts.User) -> str:
    state = "active" if user.active else "deactivated"
    secret = "password" if user.password_hash is not None else "no password"
    return f"{user.username}: {', '.join(user.roles)} ({state}, {secret})"


def _act(session: Session, args: argparse.Namespace, password: str | None, actor: str) -> Outcome:
    action = args.users_action
    if action == "list":
        users = accounts.list_users(session, limit=1_000_000)
        return Outcome(detail={"count": len(users)}, lines=[_describe(user) for user in users] or ["no accounts"])
    if action == "add":
        user = accounts.create_user(session, username=args.name, password=password, roles=args.roles,
                                    display_name=args.display_name, created_by=actor)
        return Outcome(user.id, {"username": user.username, "roles": user.roles}, [f"created {_describe(user)}"])
    user = _user(session, args.name)
    if action == "roles":
        accounts.set_roles(session, user=user, roles=args.roles)
        return Outcome(user.id, {"username": user.username, "roles": user.roles}, [f"roles set: {_describe(user)}"])
    if action == "password":
        accounts.set_password(session, user=user, password=password)
        return Outcome(user.id, {"username": user.username}, [f"password set for {user.username}; sessions ended"])
    accounts.deactivate_user(session, user=user)
    return Outcome(user.id, {"username": user.username}, [f"deactivated {_describe(user)}"])


def _log(factory: sessionmaker[Session], *, actor: str, action: str, outcome: str, resource_id: str | None,
         detail: dict[str, Any], session: Session | None = None) -> None:
    kind = "consultation" if action == "list" else "alteration"
    entry: dict[str, Any] = {"actor": actor, "roles": (), "action": kind, "resource": f"locard users {action}",
                             "resource_id": resource_id, "outcome": outcome, "detail": detail}
    if session is not None:
        audit.record(session, **entry)
        return
    with transaction(factory) as own:
        audit.record(own, **entry)


def run(args: argparse.Namespace, settings: Settings, say: Say) -> int:
    """Carry out `locard users <action>`; 0 when done, 1 when refused (the reason is printed and audited)."""
    actor = f"cli:{operating_system_user()}"
    action = args.users_action
    wanted: dict[str, Any] = {"username": args.name.strip().lower()} if hasattr(args, "name") else {}
    if hasattr(args, "roles"):
        wanted["roles"] = sorted(set(args.roles))
    try:
        password = None
        if action == "password" or (action == "add" and not args.no_password):
            password = read_password(from_stdin=args.password_stdin)
    except UsersError as exc:
        say(f"error: {exc}")
        return 1
    engine = make_engine(settings.effective_database_url)
    try:
        migrate(engine)  # the first administrator may be made before the API has ever started
        factory = session_factory(engine, chain_key=with_stack_identity(settings).chain_key)
        try:
            with transaction(factory) as session:
                outcome = _act(session, args, password, actor)
                _log(factory, actor=actor, action=action, outcome="ok", resource_id=outcome.resource_id,
                     detail={**wanted, **outcome.detail}, session=session)
        except (UsersError, accounts.AccountError) as exc:
            _log(factory, actor=actor, action=action, outcome="denied", resource_id=None,
                 detail={**wanted, "reason": str(exc)})
            say(f"error: {exc}")
            return 1
    finally:
        engine.dispose()
    for line in outcome.lines:
        say(line)
    return 0
