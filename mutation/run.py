"""`make mutate`: mutation testing of the runtime's core modules, with mutmut.

mutmut changes the code one small thing at a time (a comparison flipped, a constant moved
by one, a call removed) and runs the tests that cover the changed function: a mutant the
tests let pass shows a behaviour no test pins down. This script stages a copy of the
project in .mutation/ (mutmut rewrites the files it mutates), runs mutmut there with
mutation/setup.cfg, and prints a score per module:

    killed / (mutants - equivalent)

Equivalent mutants (those that change nothing a caller can observe) are listed, each
with its reason, in mutation/equivalent.txt. `--check` exits 1 when a module scores
below TARGET, or when a listed mutant no longer exists (the list must stay true).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "mutation"
STAGE = ROOT / ".mutation"
RUNTIME = "stripe_events"
MODULES = ("_signature", "_envelope", "_router", "_catalog", "_projection", "_dispatch")
TARGET = 0.90
# mutmut's verdicts (mutmut.stats.status_by_exit_code) that count as caught: a mutant
# that made the tests fail, hang until the timeout, or crash the interpreter.
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}
# Not caught: the tests passed, or no test runs the mutated function at all.
MISSED = {"survived", "no tests"}


def stage() -> None:
    """A copy of the project, as the working tree has it."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    # Every file git knows or would add (not what it ignores), as the working tree has it.
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (STAGE / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, STAGE / name)
    shutil.copy2(HERE / "setup.cfg", STAGE / "setup.cfg")


def equivalent() -> dict[str, str]:
    """Mutant name -> why it changes nothing observable, from mutation/equivalent.txt."""
    listed = {}
    for line in (HERE / "equivalent.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            listed[name] = reason.strip()
    return listed


def verdicts() -> dict[str, dict[str, str]]:
    """Module -> mutant name -> mutmut's verdict on it."""
    from mutmut.stats import status_by_exit_code

    found: dict[str, dict[str, str]] = {}
    for module in MODULES:
        meta = STAGE / "mutants" / "src" / RUNTIME / f"{module}.py.meta"
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes = data["exit_code_by_key"]
        found[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return found


def report(found: dict[str, dict[str, str]], listed: dict[str, str]) -> list[str]:
    """Print the scores; return what fails the check."""
    problems = []
    header = ("module", "mutants", "killed", "equivalent", "survived", "score")
    print("{:<12} {:>7} {:>6} {:>10} {:>8} {:>6}".format(*header))
    for module, codes in found.items():
        counts = Counter(
            "equivalent"
            if name in listed
            else "killed"
            if status in CAUGHT
            else "survived"
            if status in MISSED
            else f"other ({status})"
            for name, status in codes.items()
        )
        judged = len(codes) - counts["equivalent"]
        score = counts["killed"] / judged if judged else 1.0
        print(
            f"{module:<12} {len(codes):>7} {counts['killed']:>6} {counts['equivalent']:>10} "
            f"{counts['survived']:>8} {score:>6.1%}"
        )
        others = {k: v for k, v in counts.items() if k.startswith("other")}
        if others:
            print(f"{'':<12} also: {others}")
        if score < TARGET:
            problems.append(f"{module}: {score:.1%} < {TARGET:.0%}")
    survivors = [
        name
        for codes in found.values()
        for name, status in codes.items()
        if status in MISSED and name not in listed
    ]
    if survivors:
        print("\nSurvived (see each with: cd .mutation && ../.venv/bin/mutmut show NAME):")
        for name in survivors:
            print(f"  {name}")
    every = {name for codes in found.values() for name in codes}
    stale = [name for name in listed if name not in every]
    for name in stale:
        problems.append(f"mutation/equivalent.txt lists {name}, which no longer exists")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET:.0%}")
    parser.add_argument("--max-children", type=int, default=None, help="mutmut's workers")
    args = parser.parse_args()
    print(f"[mutate] staging the project in {STAGE.relative_to(ROOT)}/", flush=True)
    stage()
    command = [str(Path(sys.executable).parent / "mutmut"), "run"]
    if args.max_children:
        command += ["--max-children", str(args.max_children)]
    print(f"[mutate] {' '.join(command)} (in {STAGE.relative_to(ROOT)}/)", flush=True)
    subprocess.run(command, cwd=STAGE, check=False)
    problems = report(verdicts(), equivalent())
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
