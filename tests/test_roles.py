"""Locard's roles are one vocabulary: defined in `storage.roles` only, and the same in the account store, the API's
request models and OpenAPI document, and the CLI; the separation-of-duties rule holds for every case-data role."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from api.main import create_app
from api.schemas.accounts import RolesUpdate, UserCreate
from locard import cli
from storage import accounts
from storage.roles import ADMINISTRATOR, AUDITOR, CASE_DATA_ROLES, ROLES, Role, role_conflict
from storage.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "storage", "workers", "locard", "evaluation", "models")
NAMES = [role.value for role in Role]


def _modules_naming_a_role() -> dict[str, list[str]]:
    """Each module of Locard's packages with a string literal that is a role's name, and those names."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            names = [node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES]
            if names:
                found[path.relative_to(ROOT).as_posix()] = sorted(set(names))
    return found


def test_role_names_are_written_in_storage_roles_only() -> None:
    assert _modules_naming_a_role() == {"storage/roles.py": sorted(NAMES)}


def test_the_roles() -> None:
    assert NAMES == ["investigator", "forensic_examiner", "supervisor", "auditor", "case_system", "administrator"]
    assert set(CASE_DATA_ROLES) == set(ROLES) - {AUDITOR, ADMINISTRATOR}
    assert Role.SUPERVISOR == "supervisor" and f"{Role.CASE_SYSTEM}" == "case_system"  # members are their names


@pytest.mark.parametrize("role", CASE_DATA_ROLES)
def test_an_administrator_holds_no_case_data_role(role: Role) -> None:
    assert role_conflict([ADMINISTRATOR, role.value]) == [role.value]
    with pytest.raises(accounts.RoleConflict, match=role.value):
        accounts.check_roles([ADMINISTRATOR, role])
    assert role_conflict([role]) == []


def test_roles_are_checked_and_kept_as_plain_names() -> None:
    assert role_conflict(frozenset(NAMES)) == sorted(role.value for role in CASE_DATA_ROLES)
    assert role_conflict([ADMINISTRATOR, AUDITOR]) == []
    checked = accounts.check_roles([Role.SUPERVISOR, "investigator", Role.INVESTIGATOR])
    assert checked == ["investigator", "supervisor"] and all(type(name) is str for name in checked)
    assert accounts.check_roles([ADMINISTRATOR, "auditor"]) == ["administrator", "auditor"]
    with pytest.raises(accounts.UnknownRole, match="known roles are " + ", ".join(NAMES)):
        accounts.check_roles(["root"])


def test_the_api_accepts_exactly_the_known_roles() -> None:
    for model in (UserCreate, RolesUpdate):
        with pytest.raises(ValidationError) as refused:
            model.model_validate({"username": "eve", "roles": ["root"]})
        [error] = refused.value.errors()
        assert error["loc"] == ("roles", 0)
        assert error["msg"] == "Input should be " + ", ".join(f"'{n}'" for n in NAMES[:-1]) + f" or '{NAMES[-1]}'"
    accepted = RolesUpdate.model_validate({"roles": NAMES})
    assert accepted.roles == list(Role)
    values: dict[str, Any] = {"environment": "test", "database_url": "sqlite://",
                              "token_secret": "f1e2d3c4b5a6978877665544332211aa",
                              "audit_key": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"}
    document = create_app(Settings(_env_file=None, **values)).openapi()  # type: ignore[call-arg]
    schemas = document["components"]["schemas"]
    for name in ("UserCreate", "RolesUpdate"):
        assert schemas[name]["properties"]["roles"]["items"] == {"$ref": "#/components/schemas/Role"}
    assert schemas["Role"]["enum"] == NAMES


def test_the_cli_offers_the_known_roles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["users", "add", "eve", "--role", "root"])
    assert exited.value.code == 2
    choices = ", ".join(f"'{name}'" for name in NAMES)
    assert f"invalid choice: 'root' (choose from {choices})" in capsys.readouterr().err
