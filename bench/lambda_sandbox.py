"""The deployment package as Lambda runs it: unzipped read-only, on a clean Python 3.11.

- `build_package`: `chalice package --stage prod`, run as tests/integration/test_package.py runs it,
  unzipped into a folder that nothing may write to (Lambda's /var/task: no __pycache__).
- `clean_runtime`: a venv of python3.11 with boto3 only (what Lambda's python3.11
  runtime provides), cached under bench/.cache/.
- `stage_function`: a function of the stage: its handler, memory and environment.
- `run_probe`: one fresh process of the clean runtime running lambda_probe.py.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stripe_events._settings import Settings
from stripe_events_ops.project import read_config, stage_environment
from stripe_events_ops.template import API_HANDLER, Names

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
PROBE = ROOT / "bench" / "lambda_probe.py"
PYTHON = "python3.11"
STAGE = "prod"  # tests/integration/test_package.py's chalice_package() packages this stage
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
# Chalice's handler of the REST API (the webhook and the billing route).
API_HANDLER_STRING = "app.app"
# What the stack's template gives a function when the stage leaves the name empty.
STACK_VARIABLES = ("STRIPE_EVENTS_TABLE", "STRIPE_EVENTS_BUCKET", "STRIPE_EVENTS_TOPIC_ARN")
PROBE_TIMEOUT_SECONDS = 300


def progress(message: str) -> None:
    print(f"[package-bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Package:
    task_dir: Path  # the unzipped package, read-only
    sam: dict[str, Any]  # the SAM template `chalice package` wrote beside the zip
    zip_bytes: int
    unzipped_bytes: int
    files: int
    bytecode_files: int  # .pyc files shipped in the zip (Chalice ships none by itself)
    unzipped: frozenset[str]  # every path in task_dir, relative, as unzipped

    def written(self) -> list[str]:
        """Paths that appeared in task_dir after unzipping (such as __pycache__)."""
        return sorted(_tree(self.task_dir) - self.unzipped)


def _tree(folder: Path) -> frozenset[str]:
    return frozenset(str(path.relative_to(folder)) for path in folder.rglob("*"))


def _set_writable(folder: Path, writable: bool) -> None:
    for path in (folder, *folder.rglob("*")):
        mode = path.stat().st_mode
        path.chmod((mode | stat.S_IWUSR) if writable else (mode & ~0o222))


@contextlib.contextmanager
def built_package(work: Path) -> Iterator[Package]:
    """The deployment package of stage `prod`, unzipped read-only under `work`."""
    # tests/integration/test_package.py imports cfn-lint and the SAM translator (seconds): only now.
    from tests.integration.test_package import chalice_package

    progress("building the deployment package (chalice package --stage prod)")
    out = work / "package"
    try:
        # Its timing line is progress, not a result: to stderr with the others.
        with contextlib.redirect_stdout(sys.stderr):
            sam_path = chalice_package(out)
    except AssertionError as failed:
        raise SystemExit(f"`chalice package --stage {STAGE}` failed:\n{failed}") from None
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SystemExit(f"`chalice package --stage {STAGE}` could not run: {error}") from None
    zip_path = out / "deployment.zip"
    task_dir = work / "task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task_dir)
        files = [info for info in archive.infolist() if not info.is_dir()]
    for info in files:
        # The zip's times, as unzip keeps them (extractall does not): a timestamp-checked
        # .pyc shipped in the zip is then valid, or not, as it would be on Lambda.
        mtime = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(task_dir / info.filename, (mtime, mtime))
    package = Package(
        task_dir,
        json.loads(sam_path.read_text(encoding="utf-8")),
        zip_path.stat().st_size,
        sum(info.file_size for info in files),
        len(files),
        sum(info.filename.endswith(".pyc") for info in files),
        _tree(task_dir),
    )
    progress(
        f"deployment.zip: {package.zip_bytes:,} bytes, {package.files:,} files "
        f"({package.bytecode_files:,} .pyc)"
    )
    # Read-only, as /var/task is: Python cannot cache bytecode there, so every cold start
    # compiles the modules the zip has no bytecode for.
    _set_writable(task_dir, False)
    try:
        yield package
    finally:
        _set_writable(task_dir, True)


@dataclass(frozen=True)
class Runtime:
    python: Path
    version: str
    boto3: str


def _run(command: list[str], what: str) -> str:
    # Neither the development venv nor the caller's Python settings reach the runtime.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    except OSError as error:
        raise SystemExit(f"{what} could not run: {error}") from None
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({' '.join(command)}):\n{result.stdout}{result.stderr}")
    return result.stdout


def base_python() -> Path:
    """The python3.11 interpreter itself (not a venv's), from PATH."""
    found = shutil.which(PYTHON)
    if found is None:
        raise SystemExit(
            f"{PYTHON} is not on PATH. The benchmark runs the package on a clean Python 3.11, "
            "as Lambda's python3.11 runtime does: install Python 3.11 (for example "
            "`pyenv install 3.11`) and put python3.11 on PATH."
        )
    code = (
        "import sys; print(getattr(sys, '_base_executable', sys.executable)); "
        "print('%d.%d' % sys.version_info[:2])"
    )
    executable, version = _run([found, "-I", "-c", code], f"{found}").split()
    if version != "3.11":
        raise SystemExit(f"{found} is Python {version}, not 3.11 (Lambda's python3.11 runtime)")
    return Path(executable)


def clean_runtime() -> Runtime:
    """A venv of python3.11 with only boto3, of the version the development venv pins."""
    boto3_version = importlib.metadata.version("boto3")
    folder = CACHE / f"runtime-boto3-{boto3_version}"
    python = folder / "bin" / "python"
    ready = folder / ".ready"  # written last: a half-made runtime is made again
    if not ready.exists():
        progress(f"making the clean runtime {folder.relative_to(ROOT)} (python3.11, boto3 only)")
        shutil.rmtree(folder, ignore_errors=True)
        _run([str(base_python()), "-m", "venv", str(folder)], f"{PYTHON} -m venv")
        progress(f"pip install boto3=={boto3_version} (from PyPI)")
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"boto3=={boto3_version}",
            ],
            "pip install boto3 in the clean runtime (it needs PyPI)",
        )
        ready.write_text(f"boto3=={boto3_version}\n", encoding="utf-8")
    version = _run(
        [str(python), "-I", "-c", "import sys; print(sys.version.split()[0])"],
        f"the clean runtime's python ({python})",
    )
    return Runtime(python, version.strip(), boto3_version)


@dataclass(frozen=True)
class LambdaFunction:
    name: str  # its key under the stage's `lambda_functions` in .chalice/config.json
    function_name: str  # the Lambda function's name
    handler: str  # `_HANDLER`: module.attribute
    memory_mb: int
    variables: dict[str, str]  # its environment variables, as the stack sets them

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.variables)


def stage_function(name: str, handler: str, sam: dict[str, Any]) -> LambdaFunction:
    """Function `name` of stage `prod`, as the packaged template and the config define it.

    `handler` is Chalice's handler string for it (app.app for the REST API).
    """
    config = read_config(ROOT)
    names = Names(f"{config['app_name']}-{STAGE}", ACCOUNT)
    variables = stage_environment(STAGE, ROOT)
    functions = config["stages"][STAGE].get("lambda_functions", {})
    variables.update(functions.get(name, {}).get("environment_variables", {}))
    # The stack fills in the names of its own table, bucket and topic (infra/merge.json).
    stack = {
        "STRIPE_EVENTS_TABLE": names.table,
        "STRIPE_EVENTS_BUCKET": names.bucket,
        "STRIPE_EVENTS_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{names.topic}",
    }
    for variable in STACK_VARIABLES:
        if not variables.get(variable, "").strip():
            variables[variable] = stack[variable]
    packaged = [
        resource["Properties"]
        for resource in sam["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        and resource["Properties"].get("Handler") == handler
    ]
    if not packaged:
        raise SystemExit(f"the packaged template has no function with handler {handler}")
    function_name = names.function(name)
    return LambdaFunction(
        name, function_name, handler, int(packaged[0].get("MemorySize", 128)), variables
    )


def webhook_function(sam: dict[str, Any]) -> LambdaFunction:
    return stage_function(API_HANDLER, API_HANDLER_STRING, sam)


def lambda_environment(
    function: LambdaFunction, task_dir: Path, moto_url: str, home: Path
) -> dict[str, str]:
    """What Lambda sets for `function`, with AWS at the moto server; nothing else."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        # An empty home, and no AWS config files: nothing of this machine's is read.
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "LAMBDA_TASK_ROOT": str(task_dir),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": moto_url,
        "_HANDLER": function.handler,
        **function.variables,
    }


@dataclass(frozen=True)
class Sandbox:
    """Where probes run: the runtime, the package, the moto server, a scratch folder."""

    runtime: Runtime
    package: Package
    moto_url: str
    scratch: Path

    def run_probe(
        self, function: LambdaFunction, spec: dict[str, Any], *, importtime: bool = False
    ) -> tuple[dict[str, Any], str]:
        """One cold start of `function` doing `spec` (see lambda_probe.py): its result
        and its stderr."""
        home = self.scratch / "home"
        home.mkdir(exist_ok=True)
        spec_path = self.scratch / "spec.json"
        result_path = self.scratch / "result.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        result_path.unlink(missing_ok=True)
        # -I: no PYTHONPATH, no user site, not the script's folder; -B because root (as in
        # a container) may write bytecode even to a read-only folder, and Lambda cannot.
        flags = ["-I", "-B", *(["-X", "importtime"] if importtime else [])]
        command = [
            str(self.runtime.python),
            *flags,
            str(PROBE),
            str(self.package.task_dir),
            str(spec_path),
            str(result_path),
        ]
        env = lambda_environment(function, self.package.task_dir, self.moto_url, home)
        try:
            ran = subprocess.run(
                command,
                cwd=self.package.task_dir,  # Lambda's working directory is /var/task
                env=env,
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise SystemExit(
                f"{function.handler} ({spec['mode']}) took over {PROBE_TIMEOUT_SECONDS} s"
            ) from None
        if ran.returncode != 0 or not result_path.exists():
            tail = "\n".join((ran.stdout + ran.stderr).splitlines()[-40:])
            raise SystemExit(
                f"{function.handler} ({spec['mode']}) failed in the clean runtime, "
                f"exit {ran.returncode}:\n{tail}"
            )
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        if result["foreign_modules"]:
            raise SystemExit(
                "the clean runtime loaded modules from outside the package and the runtime: "
                + ", ".join(result["foreign_modules"])
            )
        return result, ran.stderr
