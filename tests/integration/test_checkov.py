"""Checkov on what CloudFormation gets, offline: the packaged template (as `chalice package`
writes it, and after the SAM transform, where SAM's stage is), and the stack `infra up`
deploys. Every check it fails is fixed, or skipped below with the reason.

Checkov runs from a venv of its own, `.venv/checkov` (requirements-checkov.txt): it pins
boto3 to another version than the tests'. It runs once, on all the templates together,
with nothing to download and no platform key.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stripe_events_ops.project import read_config
from stripe_events_ops.template import stage_stack_template
from tests.helpers import ROOT
from tests.integration.test_package import FUNCTIONS, chalice_package, transform

CHECKOV = Path(sys.prefix) / "checkov" / "bin" / "checkov"
INSTALL = (
    "python3.11 -m venv .venv/checkov && .venv/checkov/bin/pip install --require-hashes "
    "-r requirements-checkov.txt"
)


@dataclass(frozen=True)
class Skip:
    """Why a check does not apply; `resources`: the logical ids it is skipped for (None:
    every resource it fails on)."""

    reason: str
    resources: frozenset[str] | None = None


SKIPPED = {
    "CKV_AWS_116": Skip(
        "An event function's failed events go to the dead-letter queue through its "
        "on-failure destination (EventInvokeConfig), which also records the error; Checkov "
        "looks only for the older DeadLetterConfig. API Gateway invokes the webhook "
        "synchronously, so a dead-letter queue would never receive anything: Stripe retries."
    ),
    "CKV_AWS_117": Skip(
        "The functions call only AWS's public endpoints and Stripe's API, and reach nothing "
        "private: in a VPC they would need a NAT gateway or an endpoint per service."
    ),
    "CKV_AWS_173": Skip(
        "The functions' environment holds names only (table, bucket, topic, SSM parameters); "
        "the secrets are SecureString parameters read at run time, and Lambda encrypts the "
        "environment at rest with its AWS managed key."
    ),
    "CKV_AWS_119": Skip(
        "DynamoDB always encrypts the table at rest (AWS owned key); a customer managed key "
        "costs a key and its requests per stage, and a key policy to keep, and keeps out no "
        "one the table's IAM policies let in.",
        frozenset({"Table"}),
    ),
    "CKV_AWS_120": Skip(
        "Every delivery must reach the webhook's function: a cache would answer a repeated "
        "POST without handling it (and costs by the hour).",
        frozenset({"RestAPI", "RestAPIapiStage"}),
    ),
    "CKV_AWS_158": Skip(
        "CloudWatch Logs encrypts the access logs at rest with its own keys; they hold no "
        "header and no body. A customer managed key costs a key per stage and a key policy "
        "for the logs service.",
        frozenset({"ApiAccessLogs"}),
    ),
    "CKV_AWS_18": Skip(
        "Only the functions' roles reach the bucket (public access blocked, owner enforced). "
        "Server access logs would need a second bucket, which fails the same check; "
        "CloudTrail's S3 data events are the audit trail where one is required.",
        frozenset({"BodiesBucket"}),
    ),
    "CKV_AWS_26": Skip(
        "CloudWatch cannot publish alarms to a topic under the AWS managed key alias/aws/sns "
        "(its key policy lets in the account's principals, not CloudWatch), and a customer "
        "managed key costs one per stage; an alarm carries its name and a metric's value, "
        "no customer data. The notifications topic, which does, is encrypted.",
        frozenset({"AlarmTopic"}),
    ),
    "CKV_AWS_27": Skip(
        "The queue is encrypted with SQS managed keys (SqsManagedSseEnabled), which Checkov "
        "does not count. A KMS key would have to be customer managed: the AWS managed "
        "alias/aws/sqs lets in the account's principals, not EventBridge, which sends the "
        "rules' dead letters.",
        frozenset({"DeadLetterQueue"}),
    ),
}

# A copy of the packaged template without five of its hardenings, and the failure each
# removal must bring: the check would notice if the template lost one.
WEAKENED = {
    ("CKV_AWS_21", "BodiesBucket"),  # versioning
    ("CKV_AWS_26", "NotificationsTopic"),  # encryption
    ("CKV_AWS_73", "RestAPI"),  # the stage's tracing
    ("CKV_AWS_76", "RestAPI"),  # access logs
    ("CKV_AWS_115", "APIHandler"),  # the reserved concurrency option
}


def weakened(sam: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(sam)
    resources = template["Resources"]
    del resources["BodiesBucket"]["Properties"]["VersioningConfiguration"]
    del resources["NotificationsTopic"]["Properties"]["KmsMasterKeyId"]
    del resources["RestAPI"]["Properties"]["TracingEnabled"]
    del resources["RestAPI"]["Properties"]["AccessLogSetting"]
    del resources["APIHandler"]["Properties"]["ReservedConcurrentExecutions"]
    return template


@dataclass(frozen=True)
class Findings:
    """What Checkov found, by template: the failed (check, logical id) pairs, and how many
    checks passed."""

    failed: dict[str, set[tuple[str, str]]]
    passed: dict[str, int]
    parsing_errors: list[str]


def run_checkov(folder: Path) -> Findings:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed in {CHECKOV.parent.parent}: {INSTALL}")
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("BC_", "PRISMA_"))
    }
    env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"  # it would ask PyPI for a newer checkov
    files = sorted(folder.glob("*.json"))
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--soft-fail"]
    command += ["--output", "json", *(arg for f in files for arg in ("--file", str(f)))]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    print(f"checkov took {time.monotonic() - started:.1f} s for {len(files)} templates")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # one framework: one report
    assert report["check_type"] == "cloudformation"
    failed: dict[str, set[tuple[str, str]]] = {f.name: set() for f in files}
    passed = dict.fromkeys(failed, 0)
    for check in report["results"]["failed_checks"]:
        logical_id = check["resource"].rpartition(".")[2]
        failed[Path(check["file_path"]).name].add((check["check_id"], logical_id))
    for check in report["results"]["passed_checks"]:
        passed[Path(check["file_path"]).name] += 1
    return Findings(failed, passed, report["results"]["parsing_errors"])


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Findings:
    folder = tmp_path_factory.mktemp("checkov")
    sam = json.loads(chalice_package(folder / "package").read_text())
    templates = {
        "packaged.json": sam,
        "transformed.json": transform(sam),
        "stage-stack.json": stage_stack_template(FUNCTIONS, read_config(ROOT)["app_name"]),
        "weakened.json": weakened(sam),
    }
    scanned = folder / "templates"
    scanned.mkdir()
    for name, template in templates.items():
        (scanned / name).write_text(json.dumps(template))
    return run_checkov(scanned)


def unexplained(failed: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The failures that no skip explains."""

    def explained(check: str, logical_id: str) -> bool:
        skip = SKIPPED.get(check)
        return skip is not None and (skip.resources is None or logical_id in skip.resources)

    return {(check, logical_id) for check, logical_id in failed if not explained(check, logical_id)}


@pytest.mark.parametrize("template", ["packaged.json", "transformed.json", "stage-stack.json"])
def test_checkov_finds_nothing_but_what_is_skipped_with_its_reason(
    findings: Findings, template: str
) -> None:
    assert findings.parsing_errors == []
    assert findings.passed[template] > 10  # it did check the template
    assert unexplained(findings.failed[template]) == set()


def test_every_skip_is_still_needed(findings: Findings) -> None:
    failed = set().union(*(findings.failed[t] for t in findings.failed if t != "weakened.json"))
    for check, skip in SKIPPED.items():
        resources = {logical_id for c, logical_id in failed if c == check}
        assert resources, f"{check} fails nowhere now: remove its skip"
        assert skip.resources is None or skip.resources <= resources, check


def test_checkov_notices_a_hardening_removed(findings: Findings) -> None:
    assert unexplained(findings.failed["weakened.json"]) == WEAKENED
