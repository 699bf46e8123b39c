"""`stripe-events build`: Chalice's deployment package, with compiled bytecode in it.

Lambda runs the package from a read-only directory, so Python cannot write the
bytecode it compiles: without `__pycache__` in the zip, every cold start compiles every
module it imports (about half of the cold import, measured). Chalice ships sources
only and has no hook, but `chalice deploy` and `chalice package` both reuse the package
it keeps in `.chalice/deployments/`, named by a hash of the requirements and the app's
files. So `build` makes that package with Chalice's own packager, then adds the
bytecode to it; the next `chalice deploy` or `chalice package` ships it as it is
("Reusing existing deployment package"). Any change to the app makes a new hash, and
Chalice a new package without bytecode: run `build` again before deploying.

The bytecode is checked against its source's hash (PEP 552), not a timestamp: zip
keeps times to 2 seconds only, and when Chalice refreshes `app.py` or `chalicelib/` in
a package, a checked .pyc of the old source is ignored instead of run.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import click

from stripe_events_ops.options import deployed_stage_option
from stripe_events_ops.project import current_project

# Lambda's runtime: bytecode is only valid for the Python minor version that wrote it.
RUNTIME = (3, 11)
# Where Lambda puts the package: the paths tracebacks show.
TASK_ROOT = "/var/task"
# The zip's comment, once its bytecode is in: building again leaves it as it is.
MARK = b"stripe-events: bytecode, checked hash"


class BuildError(click.ClickException):
    pass


def chalice_package(project_dir: Path, stage: str) -> Path:
    """The package Chalice keeps for the project, made (or found) by Chalice's packager."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.packager import (
        DependencyBuilder,
        LambdaDeploymentPackager,
        PipRunner,
        SubprocessPip,
    )
    from chalice.utils import UI, OSUtils

    config = CLIFactory(str(project_dir)).create_config_obj(chalice_stage_name=stage)
    if config.automatic_layer:
        raise BuildError(
            "automatic_layer is on: Chalice then packages the dependencies as a layer, "
            "which build does not compile; turn it off in .chalice/config.json"
        )
    osutils = OSUtils()
    # As `chalice deploy` and `chalice package` make it (chalice.deploy.deployer).
    builder = DependencyBuilder(
        osutils=osutils,
        pip_runner=PipRunner(pip=SubprocessPip(osutils=osutils), osutils=osutils),
        architecture=config.lambda_architecture,
    )
    packager = LambdaDeploymentPackager(
        osutils=osutils,
        dependency_builder=builder,
        ui=UI(),
        architecture=config.lambda_architecture,
    )
    return Path(packager.create_deployment_package(str(project_dir), config.lambda_python_version))


def add_bytecode(package: Path) -> int:
    """Compile every module of the zip into it; return how many .pyc it now holds.

    A `__pycache__` already in it (a developer's, copied from chalicelib/ or vendor/) is
    replaced: its timestamps would not match the unzipped sources anyway.
    """
    if sys.version_info[:2] != RUNTIME:
        raise BuildError(
            f"bytecode must be compiled by Python {RUNTIME[0]}.{RUNTIME[1]}, as Lambda's "
            f"runtime; this is Python {sys.version_info[0]}.{sys.version_info[1]}"
        )
    with zipfile.ZipFile(package) as source:
        if source.comment == MARK:
            return sum(name.endswith(".pyc") for name in source.namelist())
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "package"
        with zipfile.ZipFile(package) as source:
            kept = [i for i in source.infolist() if "__pycache__/" not in i.filename]
            for info in kept:
                source.extract(info, root)
        compiled = compileall.compile_dir(
            root,
            quiet=2,
            stripdir=str(root),
            prependdir=TASK_ROOT,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
        if not compiled:
            raise BuildError(f"some modules of {package} do not compile (see above)")
        rebuilt = Path(work) / "package.zip"
        count = 0
        with (
            zipfile.ZipFile(package) as source,
            zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            for info in kept:
                target.writestr(info, source.read(info))
            for pyc in sorted(root.rglob("__pycache__/*.pyc")):
                target.write(pyc, pyc.relative_to(root).as_posix())
                count += 1
            target.comment = MARK
        shutil.move(rebuilt, package)
    return count


@click.command(name="build")
@deployed_stage_option
def build_command(stage: str) -> None:
    """Make the deployment package with compiled bytecode, for `chalice deploy` or `package`.

    Chalice reuses it as long as the app's files and requirements do not change: run it
    right before `chalice deploy --stage STAGE` or `chalice package --stage STAGE`.
    """
    project = current_project()
    click.echo("Building the deployment package with Chalice's packager…", err=True)
    package = chalice_package(project, stage)
    click.echo(f"Compiling its modules into {package.relative_to(project)}…", err=True)
    count = add_bytecode(package)
    size = package.stat().st_size / 1e6
    click.echo(
        f"{package.relative_to(project)}: {count} modules compiled, {size:.1f} MB. "
        f"`chalice deploy --stage {stage}` and `chalice package --stage {stage}` ship it."
    )
