"""What a user without AWS set up sees: one line that names the fix, a non-zero exit, and
no traceback. Each command runs in its own process, as a user runs it, with no AWS
variables and a home without ~/.aws."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import shell_without_aws
from tests.integration.test_smoke import cli, free_port

DEPLOYED_STAGE_COMMANDS = [
    ["ledger", "--stage", "dev"],
    ["failures", "--stage", "prod"],
    ["replay", "--failed", "--stage", "dev"],
    ["state", "customer", "cus_1", "--stage", "dev"],
    ["infra", "index-ledger", "--stage", "prod"],
    ["infra", "up", "--stage", "dev"],
]


def run(home: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, env=shell_without_aws(HOME=str(home), **variables))


def one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", DEPLOYED_STAGE_COMMANDS, ids=" ".join)
def test_without_a_region_the_command_says_which_variable_to_set(
    tmp_path: Path, args: list[str]
) -> None:
    line = one_clean_line(run(tmp_path, *args))
    assert "no AWS region" in line and "AWS_REGION" in line, line


@pytest.mark.parametrize("args", DEPLOYED_STAGE_COMMANDS, ids=" ".join)
def test_without_credentials_the_command_says_how_to_give_them(
    tmp_path: Path, args: list[str]
) -> None:
    # AWS_REGION is what Lambda and most shells set; boto3 itself reads AWS_DEFAULT_REGION.
    line = one_clean_line(run(tmp_path, *args, AWS_REGION="us-east-1"))
    assert "no AWS credentials" in line and "AWS_PROFILE" in line, line


def test_a_port_in_use_names_another_one(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        line = one_clean_line(run(tmp_path, "run", "--port", str(port)))
    assert f"port {port} is in use" in line and "PORT=" in line, line
