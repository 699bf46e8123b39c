"""`stripe-events build`: the deployment package Chalice ships, with checked bytecode in it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from stripe_events_ops import build
from stripe_events_ops.cli import main
from tests.helpers import ROOT
from tests.integration.test_package import REGION, chalice_package

# PEP 552: the flags word of a .pyc checked against its source's hash.
CHECKED_HASH_FLAGS = 0b11


def write_zip(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as package:
        for name, text in files.items():
            package.writestr(name, text)


def test_every_module_gets_checked_bytecode_and_stale_caches_go(tmp_path: Path) -> None:
    package = tmp_path / "package.zip"
    write_zip(
        package,
        {
            "app.py": "VALUE = 1\n",
            "lib/mod.py": "def f() -> int:\n    return 2\n",
            "lib/__pycache__/mod.cpython-311.pyc": "a developer's stale cache",
            "lib/data.json": "{}",
        },
    )
    assert build.add_bytecode(package) == 2
    with zipfile.ZipFile(package) as built:
        names = set(built.namelist())
        assert names == {
            "app.py",
            "lib/mod.py",
            "lib/data.json",
            "__pycache__/app.cpython-311.pyc",
            "lib/__pycache__/mod.cpython-311.pyc",
        }
        pyc = built.read("lib/__pycache__/mod.cpython-311.pyc")
        assert int.from_bytes(pyc[4:8], "little") == CHECKED_HASH_FLAGS
        assert built.comment == build.MARK
    # Building again leaves it as it is.
    before = package.read_bytes()
    assert build.add_bytecode(package) == 2
    assert package.read_bytes() == before


def test_a_module_that_does_not_compile_stops_the_build(tmp_path: Path) -> None:
    package = tmp_path / "package.zip"
    write_zip(package, {"app.py": "def broken(:\n"})
    with pytest.raises(build.BuildError, match="do not compile"):
        build.add_bytecode(package)


def test_bytecode_is_only_written_by_lambdas_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "package.zip"
    write_zip(package, {"app.py": "VALUE = 1\n"})
    monkeypatch.setattr(build, "RUNTIME", (3, 12))
    with pytest.raises(build.BuildError, match=r"Python 3\.12, as Lambda's runtime"):
        build.add_bytecode(package)


def test_chalice_ships_the_built_package_and_python_loads_its_bytecode(tmp_path: Path) -> None:
    env = {"AWS_DEFAULT_REGION": REGION, "STRIPE_EVENTS_STATE_DIR": str(tmp_path)}
    result = CliRunner(env=env).invoke(main, ["--project", str(ROOT), "build", "--stage", "prod"])
    assert result.exit_code == 0, result.output
    assert "modules compiled" in result.stdout

    shipped = chalice_package(tmp_path / "out").parent / "deployment.zip"
    task = tmp_path / "task"
    with zipfile.ZipFile(shipped) as package:
        assert package.comment == build.MARK  # Chalice reused the built package
        sources = [n for n in package.namelist() if n.endswith(".py")]
        package.extractall(task)
    missing = [s for s in sources if not (task / build_cache_path(s)).exists()]
    assert missing == []

    # As Lambda runs it: nothing but the package and the standard library, no writes.
    probe = subprocess.run(
        [sys.executable, "-I", "-B", "-v", "-c", "import sys; sys.path.insert(0, '.'); import app"],
        cwd=task,
        env={"PATH": os.environ["PATH"], "STRIPE_EVENTS_STAGE": "local", "_HANDLER": "app.app"},
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    from_package = [
        line for line in probe.stderr.splitlines() if line.startswith(f"# code object from '{task}")
    ]
    compiled_here = [line for line in probe.stderr.splitlines() if "# wrote " in line]
    assert len(from_package) > 20 and compiled_here == []
    # None of the package's modules was compiled from its source (Python names the source,
    # unquoted, when it does).
    compiled = [
        line for line in probe.stderr.splitlines() if line.startswith(f"# code object from {task}")
    ]
    assert compiled == []


def build_cache_path(source: str) -> str:
    folder, _, name = source.rpartition("/")
    cached = f"__pycache__/{name[:-3]}.cpython-311.pyc"
    return f"{folder}/{cached}" if folder else cached
