"""Every stage but `local` is protected, decided by the stage alone: packaged as a user
packages it, a stage that asks for the local bus is refused, and any other one gets IAM
on the read route and no secret in its functions' environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.integration.test_package import run_chalice_package


def project_with_stage(tmp_path: Path, name: str, variables: dict[str, str]) -> Path:
    """A copy of the project with one more stage, `name`: the dev stage's config with
    `variables` over its environment. Chalice's package cache is the project's own, so
    the wheels are fetched once."""
    project = tmp_path / "project"
    project.mkdir()
    for item in ("app.py", "requirements.txt"):
        shutil.copy(ROOT / item, project / item)
    for folder in ("chalicelib", "src", "vendor"):  # vendor/'s link to the runtime in src/
        shutil.copytree(
            ROOT / folder,
            project / folder,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    chalice = project / ".chalice"
    chalice.mkdir()
    for policy in (ROOT / ".chalice").glob("policy-*.json"):
        shutil.copy(policy, chalice / policy.name)
    (ROOT / ".chalice" / "deployments").mkdir(exist_ok=True)
    (chalice / "deployments").symlink_to(ROOT / ".chalice" / "deployments")
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stage = json.loads(json.dumps(config["stages"]["dev"]))
    stage["environment_variables"] = {**stage["environment_variables"], **variables}
    config["stages"][name] = stage
    (chalice / "config.json").write_text(json.dumps(config, indent=2))
    return project


def test_a_deployable_stage_that_asks_for_the_local_bus_is_not_packaged(tmp_path: Path) -> None:
    project = project_with_stage(
        tmp_path,
        "qa",
        {
            "STRIPE_EVENTS_STAGE": "test",
            "STRIPE_EVENTS_BUS": "local",
            "STRIPE_WEBHOOK_SECRET": "whsec_plain_in_config",
        },
    )
    result = run_chalice_package(project, "qa", tmp_path / "out")
    assert result.returncode != 0
    assert "STRIPE_EVENTS_BUS='local'" in result.stderr + result.stdout
    assert not (tmp_path / "out" / "sam.json").exists()
    assert "whsec_plain_in_config" not in result.stderr + result.stdout


def functions_of(sam: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in sam["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    ]


@pytest.mark.parametrize("stage", ["test", "qa"])
def test_a_stage_named_anything_but_local_gets_iam_and_no_plain_secret(
    tmp_path: Path, stage: str
) -> None:
    project = project_with_stage(tmp_path, "qa", {"STRIPE_EVENTS_STAGE": stage})
    result = run_chalice_package(project, "qa", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    sam = json.loads((tmp_path / "out" / "sam.json").read_text())
    swagger = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    route = swagger["paths"]["/billing/customers/{customer_id}"]["get"]
    [security] = route["security"]
    [scheme] = security
    assert swagger["securityDefinitions"][scheme]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert "security" not in swagger["paths"]["/stripe/webhook"]["post"]  # Stripe cannot sign
    functions = functions_of(sam)
    assert functions
    for function in functions:
        variables = function["Environment"]["Variables"]
        assert variables["STRIPE_EVENTS_STAGE"] == stage
        assert "STRIPE_WEBHOOK_SECRET" not in variables and "STRIPE_API_KEY" not in variables
        assert variables["STRIPE_WEBHOOK_SECRET_PARAM"]
