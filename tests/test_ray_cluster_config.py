"""ray_cluster.yaml: a config Ray's own cluster launcher accepts, whose Ray commands all use token auth."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG_PATH = Path(__file__).resolve().parent.parent / "ray_cluster.yaml"
REQUIRED_ENV = ("RAY_AUTH_MODE=token", "RAY_USAGE_STATS_ENABLED=0")
START_COMMANDS = ("head_start_ray_commands", "worker_start_ray_commands")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _ray_invocations(command: str) -> list[str]:
    """The shell segments of a command line that run `ray` (its env assignments included)."""
    segments = re.split(r";|&&|\|\|", command)
    return [s.strip() for s in segments if re.search(r"(^|[\s/])ray\s", s.strip())]


def test_validates_against_rays_schema_as_written(config: dict[str, Any]) -> None:
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))


def test_ray_up_accepts_it(config: dict[str, Any]) -> None:
    """What `ray up` does with the file: fill in the local provider's defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"
    assert prepared["max_workers"] == len(config["provider"]["worker_ips"])
    for key in START_COMMANDS:  # ours, not the defaults
        assert prepared[key] == config[key]


def test_every_start_command_carries_token_auth_and_no_usage_stats(config: dict[str, Any]) -> None:
    for key in START_COMMANDS:
        commands = config[key]
        assert commands, f"{key} is empty"
        for command in commands:
            invocations = _ray_invocations(command)
            assert invocations, f"{key}: {command!r} runs no ray command"
            for invocation in invocations:
                for assignment in REQUIRED_ENV:
                    assert assignment in invocation.split(), f"{key}: {invocation!r} lacks {assignment}"


def test_head_and_workers_start_as_expected(config: dict[str, Any]) -> None:
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head --port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in workers


def test_nodes_install_locard_and_share_the_token(config: dict[str, Any]) -> None:
    setup = "\n".join(config["setup_commands"])
    assert "git clone" in setup
    assert "scripts/install.sh" in setup
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
