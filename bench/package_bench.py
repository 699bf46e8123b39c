"""Benchmark: the deployment package as Lambda runs it, against what no function can skip.

Run from the repository root: `make bench` runs it after webhook_bench.py, or
`.venv/bin/python bench/package_bench.py [--repeat N] [--deliveries N] [--check]`.

It builds the package of stage `prod` (`chalice package`, as tests/integration/test_package.py
does: it reuses the one `stripe-events build` made, with bytecode, which `make bench`
runs first; with no such package, Chalice makes one of sources only), unzips it into a
read-only folder (Lambda's /var/task: no bytecode cache but the zip's), and runs its
functions in a clean Python 3.11 with boto3 only (cached in bench/.cache/),
each cold start a fresh process, against the stage's table, bucket, topic and secrets
on a moto server on 127.0.0.1. It measures, median and best of N fresh processes:

- cold start: `import app` with `_HANDLER` naming the webhook function (app.app), against
  `import chalice.app, boto3`; and naming an event function, against
  `import chalice.app, boto3, stripe`. Target: at most 1.2x the baseline.
- the first and the warm calls of each function, in the same process, and its peak RSS;
- where the import's time goes: `-X importtime`, top 10 cumulative;
- the dispatcher's cost per handler, against one conditional DynamoDB write (per handler:
  dispatching to 5 no-op handlers minus dispatching to 1, over 4), and its AWS calls.
  Target: at most 2x one write;
- `make run`'s throughput, signed deliveries of distinct events per second, with 1 and
  16 senders at once.

It prints a table per section and writes bench/results/package.json. It exits 1 on a
missed target only with --check: the runtime is being optimised, and without it the
benchmark only reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `python bench/package_bench.py` puts bench/ on sys.path, not the root that holds tests/.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lambda_probe import IMPORT_MARKER  # noqa: E402
from lambda_sandbox import (  # noqa: E402
    STAGE,
    LambdaFunction,
    Package,
    Runtime,
    Sandbox,
    built_package,
    clean_runtime,
    progress,
    stage_function,
    webhook_function,
)
from lambda_stage import create_stage, moto_server, new_events, webhook_request  # noqa: E402
from local_throughput import Throughput, make_run_throughput  # noqa: E402
from webhook_bench import machine_note  # noqa: E402

from stripe_events._pattern import matches  # noqa: E402
from stripe_events_ops.project import read_config, routing_app  # noqa: E402
from tests.containers import eventbridge_event  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "package.json"
EVENT_FUNCTION = "customers"
EVENT_TYPE = "customer.updated"  # the webhook's event, and one the customers function handles
WEBHOOK_BASELINE = ["chalice.app", "boto3"]
EVENT_BASELINE = ["chalice.app", "boto3", "stripe"]
IMPORT_TARGET = 1.2
HANDLER_TARGET = 2.0
WARM_CALLS = 5
TOP_IMPORTS = 10
PUT_SAMPLES = 100
DISPATCH_SAMPLES = 30
HANDLER_COUNTS = (1, 5)
SENDERS = (1, 16)


@dataclass(frozen=True)
class Stat:
    """Median and best (lowest) of runs."""

    median: float
    best: float
    runs: list[float]

    @classmethod
    def of(cls, runs: Sequence[float]) -> Stat:
        return cls(statistics.median(runs), min(runs), list(runs))


@dataclass(frozen=True)
class ColdStart:
    """One function's cold starts: `import app`, its calls, against the baseline import."""

    function: str
    handler: str
    baseline: list[str]
    import_ms: Stat
    baseline_ms: Stat
    first_call_ms: Stat
    cold_ms: Stat  # the import and the first call: what the first event waits for
    warm_call_ms: Stat  # each process's median of its warm calls; best of them all
    peak_rss_mb: Stat
    baseline_rss_mb: Stat

    @property
    def ratio(self) -> float:
        return self.import_ms.median / self.baseline_ms.median


@dataclass(frozen=True)
class Target:
    name: str
    value: float  # a ratio
    limit: float

    @property
    def met(self) -> bool:
        return self.value <= self.limit


@dataclass(frozen=True)
class ImportLine:
    module: str
    imported_by: str  # the module whose import imported it first
    cumulative_ms: float
    self_ms: float


@dataclass(frozen=True)
class Dispatch:
    put_ms: Stat
    dispatch_ms: dict[int, Stat]  # handlers -> time to dispatch one event
    calls: dict[int, dict[str, int]]  # handlers -> AWS calls of one dispatch

    @property
    def per_handler_ms(self) -> float:
        low, high = HANDLER_COUNTS
        return (self.dispatch_ms[high].median - self.dispatch_ms[low].median) / (high - low)

    @property
    def ratio(self) -> float:
        return self.per_handler_ms / self.put_ms.median

    def calls_per_handler(self) -> dict[str, float]:
        low, high = HANDLER_COUNTS
        names = sorted({*self.calls[low], *self.calls[high]})
        return {
            name: (self.calls[high].get(name, 0) - self.calls[low].get(name, 0)) / (high - low)
            for name in names
        }


def cold_starts(
    sandbox: Sandbox,
    function: LambdaFunction,
    events: Callable[[], list[dict[str, Any]]],
    baseline: list[str],
    repeat: int,
) -> ColdStart:
    """`repeat` cold starts of the function and of its baseline, interleaved so that a
    noisy moment hits both; one more of each first, unmeasured, to warm the page cache."""
    runs: list[dict[str, Any]] = []
    baseline_runs: list[dict[str, Any]] = []
    for n in range(repeat + 1):
        progress(f"{function.name}: cold start {n}/{repeat}" + (" (warm-up)" if not n else ""))
        app, _ = sandbox.run_probe(function, {"mode": "invoke", "events": events()})
        base, _ = sandbox.run_probe(function, {"mode": "import", "modules": baseline})
        if n:
            runs.append(app)
            baseline_runs.append(base)
    warm = [run["call_ms"][1:] for run in runs]
    return ColdStart(
        function.name,
        function.handler,
        baseline,
        Stat.of([run["import_ms"] for run in runs]),
        Stat.of([run["import_ms"] for run in baseline_runs]),
        Stat.of([run["call_ms"][0] for run in runs]),
        Stat.of([run["import_ms"] + run["call_ms"][0] for run in runs]),
        Stat(
            statistics.median(statistics.median(calls) for calls in warm),
            min(min(calls) for calls in warm),
            [statistics.median(calls) for calls in warm],
        ),
        Stat.of([run["peak_rss_mb"] for run in runs]),
        Stat.of([run["peak_rss_mb"] for run in baseline_runs]),
    )


def import_breakdown(sandbox: Sandbox, function: LambdaFunction) -> list[ImportLine]:
    """The top imports of `import app` by cumulative time, from `-X importtime`."""
    progress(f"{function.name}: import app -X importtime")
    _, stderr = sandbox.run_probe(function, {"mode": "import", "modules": ["app"]}, importtime=True)
    parsed: list[tuple[str, int, int, int]] = []
    for line in stderr.partition(IMPORT_MARKER)[2].splitlines():
        # "import time:  <self us> | <cumulative us> | <2 spaces per level><module>"
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        parsed.append((name.strip(), depth, int(cumulative_us), int(self_us)))
    # A module's line comes after those of the modules it imports: reading backwards, the
    # last module seen one level up is the one that imported it.
    lines = []
    above: dict[int, str] = {}
    for module, level, cumulative, own in reversed(parsed):
        above[level] = module
        if level > 0:  # level 0 is `app` itself: the whole import
            lines.append(ImportLine(module, above[level - 1], cumulative / 1000, own / 1000))
    return sorted(lines, key=lambda line: line.cumulative_ms, reverse=True)[:TOP_IMPORTS]


def dispatch_overhead(sandbox: Sandbox, function: LambdaFunction) -> Dispatch:
    progress(
        f"{function.name}: {PUT_SAMPLES} conditional writes, {DISPATCH_SAMPLES} dispatches "
        f"to each of {', '.join(map(str, HANDLER_COUNTS))} no-op handlers"
    )
    # One for each warm-up, each timed dispatch, and each counted one.
    count = len(HANDLER_COUNTS) * (DISPATCH_SAMPLES + 2)
    livemode = bool(function.settings.livemode)
    spec = {
        "mode": "dispatch",
        "events": [eventbridge_event(e) for e in new_events(EVENT_TYPE, count, livemode)],
        "handlers": list(HANDLER_COUNTS),
        "put_samples": PUT_SAMPLES,
        "dispatch_samples": DISPATCH_SAMPLES,
    }
    result, _ = sandbox.run_probe(function, spec)
    return Dispatch(
        Stat.of(result["put_ms"]),
        {int(size): Stat.of(times) for size, times in result["dispatch_ms"].items()},
        {int(size): calls for size, calls in result["calls"].items()},
    )


def event_function(name: str, sam: dict[str, Any]) -> tuple[LambdaFunction, dict[str, Any]]:
    """The app's event function `name`, and its EventBridge pattern."""
    from chalice.app import CloudWatchEventConfig

    for source in routing_app(ROOT).event_sources:
        if isinstance(source, CloudWatchEventConfig) and source.name == name:
            return stage_function(name, source.handler_string, sam), source.event_pattern
    raise SystemExit(f"app.py has no event function {name!r}")


# --- the report ---------------------------------------------------------------------------


def table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], align: str = ""
) -> None:
    """`align` has an l (left) or r (right) per column; by default the first column is
    text (left) and the others numbers (right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print(title)
    for row in (header, *rows):
        cells = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        print("  " + "  ".join(cells).rstrip())
    print()


def fmt(value: float) -> str:
    return f"{value:.1f}"


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "MISSED"


def report_cold_starts(starts: Sequence[ColdStart], repeat: int) -> None:
    rows = []
    for start in starts:
        rows.append(
            [
                f"{start.function} (_HANDLER={start.handler})",
                "import app",
                fmt(start.import_ms.median),
                fmt(start.import_ms.best),
                f"{start.ratio:.2f}x",
                f"<= {IMPORT_TARGET:.1f}x {verdict(start.ratio, IMPORT_TARGET)}",
            ]
        )
        rows.append(
            [
                "",
                f"import {', '.join(start.baseline)}",
                fmt(start.baseline_ms.median),
                fmt(start.baseline_ms.best),
                "",
                "",
            ]
        )
    table(
        f"Cold start: the import, each in a fresh process (median and best of {repeat})",
        ["function", "import", "median ms", "best ms", "x baseline", "target"],
        rows,
        align="llrrrr",
    )
    table(
        f"Calls, in the process of each cold start above (median and best of {repeat}; "
        f"warm: each process's median of {WARM_CALLS} calls)",
        [
            "function",
            "first call ms",
            "best",
            "import + first call ms",
            "best",
            "warm call ms",
            "best",
            "peak RSS MB",
            "baseline RSS MB",
        ],
        [
            [
                start.function,
                fmt(start.first_call_ms.median),
                fmt(start.first_call_ms.best),
                fmt(start.cold_ms.median),
                fmt(start.cold_ms.best),
                fmt(start.warm_call_ms.median),
                fmt(start.warm_call_ms.best),
                fmt(start.peak_rss_mb.median),
                fmt(start.baseline_rss_mb.median),
            ]
            for start in starts
        ],
    )


def report_imports(function: str, lines: Sequence[ImportLine], total_ms: float) -> None:
    table(
        f"Where `import app` goes, {function}: top {TOP_IMPORTS} by cumulative time "
        f"(-X importtime, one run, which it slows; the median import: {total_ms:.0f} ms)",
        ["module", "cumulative ms", "self ms", "imported by"],
        [
            [line.module, fmt(line.cumulative_ms), fmt(line.self_ms), line.imported_by]
            for line in lines
        ],
        align="lrrl",
    )


def report_dispatch(dispatch: Dispatch) -> None:
    low, high = HANDLER_COUNTS
    rows = [
        [
            "one conditional PutItem (attribute_not_exists(pk))",
            fmt(dispatch.put_ms.median),
            fmt(dispatch.put_ms.best),
        ],
        *[
            [f"dispatch one event to {size} no-op handler(s)", fmt(stat.median), fmt(stat.best)]
            for size, stat in sorted(dispatch.dispatch_ms.items())
        ],
        [
            f"per handler: ({high} handlers - {low}) / {high - low}",
            fmt(dispatch.per_handler_ms),
            "",
        ],
    ]
    table(
        f"Dispatch, clean runtime against moto (median and best of {PUT_SAMPLES} writes, "
        f"{DISPATCH_SAMPLES} dispatches each)",
        ["", "median ms", "best ms"],
        rows,
    )
    print(
        f"  per handler / one write: {dispatch.ratio:.2f}x "
        f"(target <= {HANDLER_TARGET:.1f}x: {verdict(dispatch.ratio, HANDLER_TARGET)})\n"
    )
    per_handler = dispatch.calls_per_handler()
    table(
        "AWS calls of one dispatch",
        ["call", f"{low} handler", f"{high} handlers", "per handler"],
        [
            [
                name,
                str(dispatch.calls[low].get(name, 0)),
                str(dispatch.calls[high].get(name, 0)),
                f"{per_handler[name]:g}",
            ]
            for name in per_handler
        ],
    )


def report_throughput(results: Sequence[Throughput]) -> None:
    table(
        "make run (stage local, in-process bus, SQLite): distinct signed deliveries, all "
        "answered 200",
        ["senders at once", "deliveries", "seconds", "events/s"],
        [
            [str(r.senders), str(r.deliveries), f"{r.seconds:.2f}", f"{r.per_second:.1f}"]
            for r in results
        ],
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark the `chalice package` deployment package as Lambda runs it: "
            "read-only, on a clean Python 3.11 with boto3 only, against a moto server."
        )
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="fresh processes per cold start (default 7)"
    )
    parser.add_argument(
        "--deliveries",
        type=int,
        default=200,
        help="signed deliveries per make-run throughput run (default 200)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed (default: report)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.deliveries < 1:
        parser.error("--repeat and --deliveries must be at least 1")
    return args


@dataclass(frozen=True)
class Measured:
    runtime: Runtime
    package: Package
    starts: list[ColdStart]
    breakdown: dict[str, list[ImportLine]]  # function -> its top imports
    dispatch: Dispatch
    throughput: list[Throughput]

    @property
    def targets(self) -> list[Target]:
        found = [
            Target(
                f"{start.function}: import app / import {', '.join(start.baseline)}",
                start.ratio,
                IMPORT_TARGET,
            )
            for start in self.starts
        ]
        found.append(
            Target(
                "dispatch: per handler / one conditional write", self.dispatch.ratio, HANDLER_TARGET
            )
        )
        return found


def measure(repeat: int, deliveries: int) -> Measured:
    runtime = clean_runtime()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="package-bench-")))
        package = stack.enter_context(built_package(work))
        progress("starting a moto server on 127.0.0.1")
        moto_url = stack.enter_context(moto_server())
        webhook = webhook_function(package.sam)
        customers, pattern = event_function(EVENT_FUNCTION, package.sam)
        if not matches(pattern, eventbridge_event(new_events(EVENT_TYPE, 1, False)[0])):
            raise SystemExit(f"the {EVENT_FUNCTION} function does not handle {EVENT_TYPE}")
        create_stage(moto_url, [webhook, customers])
        scratch = work / "scratch"
        scratch.mkdir()
        sandbox = Sandbox(runtime, package, moto_url, scratch)
        api_stage = read_config(ROOT)["stages"][STAGE].get("api_gateway_stage", "api")

        def webhook_requests() -> list[dict[str, Any]]:
            # Signed now: the signature's timestamp must be within the stage's tolerance.
            livemode = bool(webhook.settings.livemode)
            fresh = new_events(EVENT_TYPE, 1 + WARM_CALLS, livemode)
            return [webhook_request(event, api_stage) for event in fresh]

        def bus_events() -> list[dict[str, Any]]:
            livemode = bool(customers.settings.livemode)
            return [eventbridge_event(e) for e in new_events(EVENT_TYPE, 1 + WARM_CALLS, livemode)]

        starts = [
            cold_starts(sandbox, webhook, webhook_requests, WEBHOOK_BASELINE, repeat),
            cold_starts(sandbox, customers, bus_events, EVENT_BASELINE, repeat),
        ]
        breakdown = {
            function.name: import_breakdown(sandbox, function) for function in (webhook, customers)
        }
        dispatch = dispatch_overhead(sandbox, customers)
        written = package.written()
        if written:
            raise SystemExit(f"the functions wrote into the read-only package: {written[:5]}")
    throughput = make_run_throughput(deliveries, SENDERS)
    return Measured(runtime, package, starts, breakdown, dispatch, throughput)


def report(measured: Measured, repeat: int) -> None:
    package, runtime = measured.package, measured.runtime
    print(f"stripe-events deployment package benchmark: {machine_note()}")
    print(
        f"package: chalice package --stage {STAGE}, deployment.zip {package.zip_bytes:,} bytes "
        f"({package.zip_bytes / 2**20:.1f} MiB), {package.files:,} files "
        f"({package.bytecode_files:,} of them .pyc), {package.unzipped_bytes / 2**20:.1f} MiB "
        "unzipped, read-only: no bytecode cache but the zip's"
    )
    print(
        f"runtime: clean Python {runtime.version} venv with boto3 {runtime.boto3} only; "
        f"sys.path: the package, then the runtime; AWS: moto on 127.0.0.1\n"
    )
    report_cold_starts(measured.starts, repeat)
    for start in measured.starts:
        report_imports(start.function, measured.breakdown[start.function], start.import_ms.median)
    report_dispatch(measured.dispatch)
    report_throughput(measured.throughput)
    table(
        "Targets",
        ["target", "measured", "limit", "result"],
        [
            [t.name, f"{t.value:.2f}x", f"{t.limit:.1f}x", verdict(t.value, t.limit)]
            for t in measured.targets
        ],
    )


def results_json(measured: Measured, repeat: int) -> dict[str, Any]:
    package, dispatch = measured.package, measured.dispatch
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_note(),
        "runtime": {"python": measured.runtime.version, "boto3": measured.runtime.boto3},
        "repeat": repeat,
        "package": {
            "stage": STAGE,
            "zip_bytes": package.zip_bytes,
            "unzipped_bytes": package.unzipped_bytes,
            "files": package.files,
            "bytecode_files": package.bytecode_files,
        },
        "cold_starts": [asdict(start) | {"ratio": start.ratio} for start in measured.starts],
        "import_breakdown": {
            name: [asdict(line) for line in lines] for name, lines in measured.breakdown.items()
        },
        "dispatch": asdict(dispatch)
        | {
            "per_handler_ms": dispatch.per_handler_ms,
            "ratio": dispatch.ratio,
            "calls_per_handler": dispatch.calls_per_handler(),
        },
        "make_run": [asdict(r) | {"per_second": r.per_second} for r in measured.throughput],
        "targets": [asdict(t) | {"met": t.met} for t in measured.targets],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    measured = measure(args.repeat, args.deliveries)
    report(measured, args.repeat)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(results_json(measured, args.repeat), indent=2) + "\n", encoding="utf-8"
    )
    print(f"results: {RESULTS.relative_to(ROOT)}; the run took {time.monotonic() - started:.0f} s")
    missed = [t.name for t in measured.targets if not t.met]
    if missed and args.check:
        print(f"FAIL: {len(missed)} target(s) missed", file=sys.stderr)
        return 1
    if missed:
        print(f"{len(missed)} target(s) missed; report only (--check makes a missed target fail)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
