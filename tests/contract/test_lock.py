"""What ships in the zip is locked: requirements.txt pins every distribution the runtime
needs, each with its hashes, and the deployment package holds exactly those versions.

Chalice's packager runs `pip download -r requirements.txt` (hashes make pip check every
file it downloads, and refuse any dependency the lock does not pin), then unpacks the
wheels into the zip. `chalice package` and `stripe-events build` share that package.
"""

from __future__ import annotations

import re
import tomllib
import zipfile
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path

import pytest

from stripe_events_ops.build import chalice_package
from tests.helpers import ROOT

LOCK = ROOT / "requirements.txt"
SOURCE = ROOT / "requirements.in"
CHECKOV_LOCK = ROOT / "requirements-checkov.txt"
CHECKOV_SOURCE = ROOT / "requirements-checkov.in"
# How each lock is made, for Python 3.11 on x86_64 Linux: Lambda's runtime (glibc 2.26,
# so manylinux2014 wheels) and this project's machines. Its header repeats the command,
# which is how to regenerate it.
COMPILE = (
    "uv pip compile --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux2014"
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(text: str) -> list[str]:
    """The logical lines of a requirements file: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.split(" #", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def lock_problems(text: str) -> list[str]:
    """Each line that is not one distribution pinned with `==` and given its sha256 hashes."""
    problems = []
    seen: set[str] = set()
    for line in requirement_lines(text):
        requirement, *options = line.split()
        pin = PIN.match(requirement)
        if not pin:
            problems.append(f"{requirement!r} is not a distribution pinned with ==")
            continue
        if not options:
            problems.append(f"{requirement} has no hash")
        problems += [
            f"{requirement}: {o!r} is not a sha256 hash" for o in options if not HASH.match(o)
        ]
        name = canonical(pin.group(1))
        if name in seen:
            problems.append(f"{name} is pinned twice")
        seen.add(name)
    return problems


def locked_versions(text: str) -> dict[str, str]:
    """Each locked distribution's version, by canonical name."""
    assert lock_problems(text) == []
    pins = (PIN.match(line.split()[0]) for line in requirement_lines(text))
    return {canonical(pin.group(1)): pin.group(2) for pin in pins if pin}


def test_every_line_of_the_lock_is_pinned_and_hashed() -> None:
    assert lock_problems(LOCK.read_text()) == []
    assert {"stripe", "aws-lambda-powertools", "requests"} <= set(locked_versions(LOCK.read_text()))
    # Lambda provides boto3: packaging another copy would only grow the zip.
    assert "boto3" not in locked_versions(LOCK.read_text())


GOOD_HASH = "--hash=sha256:" + "0" * 64


@pytest.mark.parametrize(
    "line",
    [
        "stripe\n",
        f"stripe>=16.1.0 {GOOD_HASH}\n",
        "stripe==16.1.0\n",
        "stripe==16.1.0 --hash=md5:0123456789abcdef\n",
        f"stripe[async]==16.1.0 {GOOD_HASH}\n",
        f"-e git+https://github.com/stripe/stripe-python#egg=stripe {GOOD_HASH}\n",
        "-r requirements.in\n",
        f"stripe==16.1.0 {GOOD_HASH}\nStripe==16.1.0 \\\n    {GOOD_HASH}\n",
    ],
    ids=["unpinned", "a range", "no hash", "md5", "extras", "a url", "an include", "twice"],
)
def test_the_lock_check_refuses_what_is_not_pinned_and_hashed(line: str) -> None:
    good = f"idna==3.20 \\\n    {GOOD_HASH}\n    # via requests\n"
    assert lock_problems(good) == []
    assert lock_problems(good + line)


@pytest.mark.parametrize(("lock", "source"), [(LOCK, SOURCE), (CHECKOV_LOCK, CHECKOV_SOURCE)])
def test_each_lock_is_made_from_its_source_by_the_command_it_names(
    lock: Path, source: Path
) -> None:
    header = lock.read_text().splitlines()[:2]
    assert header[1].strip("# ") == f"{COMPILE} {source.name} -o {lock.name}"
    assert lock_problems(lock.read_text()) == []
    locked = locked_versions(lock.read_text())
    for line in requirement_lines(source.read_text()):
        pin = PIN.match(line)
        assert pin, f"{source.name}: {line!r} is not pinned with =="
        assert locked[canonical(pin.group(1))] == pin.group(2), line


def test_pyproject_depends_on_what_the_lock_pins() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    # The same pins as requirements.in, which the lock is made from (test above).
    assert sorted(dependencies) == sorted(requirement_lines(SOURCE.read_text()))


def test_the_tests_run_on_the_locked_versions() -> None:
    """The venv has what the package ships (`make test` installs the lock first)."""
    for name, version in locked_versions(LOCK.read_text()).items():
        assert metadata.version(name) == version, name


def packaged_distributions(package: Path) -> dict[str, str]:
    """The distributions unpacked into a deployment package, from their METADATA."""
    found = {}
    with zipfile.ZipFile(package) as archive:
        for name in archive.namelist():
            if re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
                headers = HeaderParser().parsestr(archive.read(name).decode())
                found[canonical(headers["Name"])] = headers["Version"]
    return found


def test_the_deployment_package_holds_exactly_the_locked_versions() -> None:
    # What `stripe-events build` makes and `chalice package` ships (or reuses).
    package = chalice_package(ROOT, "prod")
    assert packaged_distributions(package) == locked_versions(LOCK.read_text())


def test_a_package_that_differs_from_the_lock_is_noticed(tmp_path: Path) -> None:
    package = tmp_path / "package.zip"
    with zipfile.ZipFile(package, "w") as archive:
        for name, version in locked_versions(LOCK.read_text()).items():
            version = "0.0.1" if name == "urllib3" else version
            metadata_file = f"{name.replace('-', '_')}-{version}.dist-info/METADATA"
            archive.writestr(
                metadata_file, f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            )
        archive.writestr("six-1.17.0.dist-info/METADATA", "Name: six\nVersion: 1.17.0\n")
    found = packaged_distributions(package)
    locked = locked_versions(LOCK.read_text())
    assert found != locked
    assert {n for n in found.keys() | locked.keys() if found.get(n) != locked.get(n)} == {
        "urllib3",
        "six",
    }
