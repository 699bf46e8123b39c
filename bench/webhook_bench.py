"""Benchmark: the webhook's own work per event, against the floor, and app.py's import time.

Run from the repository root: `make bench` (or `.venv/bin/python bench/webhook_bench.py`).

Per event, in process: `webhook.ingest` (verify the signature, check the envelope, build
the entry) followed by a publisher that does nothing, on a realistic event built from
Stripe's own example object. The floor is what no webhook can skip: HMAC-SHA256 over the
signed bytes plus `json.loads` of the body. The target is ingest <= 3.0 x floor; the
script prints PASS or FAIL and exits 1 on FAIL.

Import time: `import app` (stage `local` environment) against `import chalice.app, boto3,
stripe`, each timed with perf_counter in a fresh interpreter, several runs, median.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/webhook_bench.py` puts bench/ on sys.path, not the root that holds app.py.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import stripe  # noqa: E402

from stripe_events._bus import Publisher  # noqa: E402
from stripe_events._envelope import Entry  # noqa: E402
from stripe_events._settings import Settings  # noqa: E402
from stripe_events._webhook import ingest  # noqa: E402
from stripe_events_testing import samples  # noqa: E402

TARGET_RATIO = 3.0
# Stripe's invoice, subscription and charge examples encode to 5-7 KB pretty-printed;
# the quote example is the business object whose event comes closest to 3 KB.
EVENT_TYPE = "quote.accepted"
SECRET = "whsec_bench_current"
OLD_SECRET = "whsec_bench_previous"
TIMESTAMP = 1_700_000_000
REPEATS = 9
# Each repeat runs for at least this long, so that timer resolution and noise stay small.
MIN_REPEAT_SECONDS = 0.25
IMPORT_RUNS = 5

APP_IMPORT = "import app"
BASELINE_IMPORT = "import chalice.app, boto3, stripe"


class NullPublisher(Publisher):
    def publish(self, entry: Entry) -> None:
        pass


@dataclass(frozen=True)
class Timing:
    label: str
    median_us: float
    min_us: float
    number: int


def time_per_call(cases: dict[str, Callable[[], object]]) -> dict[str, Timing]:
    """Median and best of REPEATS repeats per case, in microseconds per call.

    The repeats of all cases are interleaved, so that a noisy moment (another process on
    one of the two cores) hits every case alike rather than one of them.
    """
    timers: dict[str, tuple[timeit.Timer, int]] = {}
    for label, func in cases.items():
        timer = timeit.Timer(func)
        number, _ = timer.autorange()
        # autorange stops at 0.2 s; scale up so every repeat lasts MIN_REPEAT_SECONDS.
        timers[label] = (timer, max(number, int(number * MIN_REPEAT_SECONDS / 0.2)))
    samples_us: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(REPEATS):
        for label, (timer, number) in timers.items():
            samples_us[label].append(timer.timeit(number) / number * 1e6)
    return {
        label: Timing(label, statistics.median(times), min(times), timers[label][1])
        for label, times in samples_us.items()
    }


def local_stage_env() -> dict[str, str]:
    """The environment Chalice gives stage `local`, as .chalice/config.json defines it."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env: dict[str, str] = dict(config.get("environment_variables", {}))
    env.update(config["stages"]["local"].get("environment_variables", {}))
    return env


def import_ms(statement: str, env: dict[str, str]) -> float:
    """Milliseconds `statement` takes in a fresh interpreter (startup itself excluded)."""
    code = (
        "import time\n"
        "started = time.perf_counter()\n"
        f"{statement}\n"
        "print(time.perf_counter() - started)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"`{statement}` failed in a fresh interpreter:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1]) * 1000


def import_times(runs: int) -> tuple[float, float]:
    """Median ms for app.py and for the baseline; runs are interleaved so drift hits both."""
    env = {**os.environ, **local_stage_env()}
    # `python -c` puts the working directory (the root) first on sys.path, where app.py is.
    env.pop("PYTHONPATH", None)
    # One discarded run each, so that both find .pyc files and a warm page cache.
    import_ms(APP_IMPORT, env)
    import_ms(BASELINE_IMPORT, env)
    app_runs: list[float] = []
    baseline_runs: list[float] = []
    for _ in range(runs):
        app_runs.append(import_ms(APP_IMPORT, env))
        baseline_runs.append(import_ms(BASELINE_IMPORT, env))
    return statistics.median(app_runs), statistics.median(baseline_runs)


def machine_note() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return (
        f"Python {platform.python_version()}, {os.cpu_count()} cores ({cpu}), "
        f"{platform.system()} {platform.release()}"
    )


def main() -> int:
    event = samples.sample_event(
        EVENT_TYPE, event_id="evt_bench0000000000000000", created=TIMESTAMP
    )
    body = samples.encode(event)
    signature_header: str = stripe.WebhookSignature.generate_signature_header(
        body.decode(), SECRET, TIMESTAMP
    )
    now = float(TIMESTAMP + 1)
    one_secret = Settings(stage="bench", webhook_secrets=(SECRET,))
    # Rotation: the old secret is tried first and fails, the second one matches.
    rotation = Settings(stage="bench", webhook_secrets=(OLD_SECRET, SECRET))
    publisher = NullPublisher()

    def webhook(settings: Settings) -> Callable[[], None]:
        def run() -> None:
            _, entry = ingest(body, signature_header, settings, now)
            publisher.publish(entry)

        return run

    key = SECRET.encode()
    old_key = OLD_SECRET.encode()
    signed = b"%d." % TIMESTAMP

    def floor() -> None:
        hmac.new(key, signed + body, hashlib.sha256).hexdigest()
        json.loads(body)

    def floor_two_hmacs() -> None:
        hmac.new(old_key, signed + body, hashlib.sha256).hexdigest()
        hmac.new(key, signed + body, hashlib.sha256).hexdigest()
        json.loads(body)

    # Check that the measured path is the accepting one before timing it.
    for settings in (one_secret, rotation):
        header, _ = ingest(body, signature_header, settings, now)
        if header.id != event["id"]:
            raise SystemExit(f"ingest returned {header}, not the benchmark event")

    print(f"stripe-events webhook benchmark: {machine_note()}")
    print(f"event: {EVENT_TYPE} from Stripe's example object, body {len(body)} bytes")
    print(f"timing: median of {REPEATS} repeats (timeit), each >= {MIN_REPEAT_SECONDS} s\n")

    timings = time_per_call(
        {
            "floor: HMAC-SHA256 + json.loads": floor,
            "ingest + no-op publish, 1 secret": webhook(one_secret),
            "floor: 2 x HMAC-SHA256 + json.loads": floor_two_hmacs,
            "ingest + no-op publish, 2 secrets (2nd)": webhook(rotation),
        }
    )
    floor_1, ingest_1, floor_2, ingest_2 = timings.values()
    ratio_1 = ingest_1.median_us / floor_1.median_us
    ratio_2 = ingest_2.median_us / floor_2.median_us
    rotation_vs_floor_1 = ingest_2.median_us / floor_1.median_us

    width = max(len(t.label) for t in (floor_1, ingest_1, floor_2, ingest_2))
    print(f"{'per event':<{width}}  {'median us':>9}  {'best us':>8}  {'ratio':>5}")
    for timing, ratio in (
        (floor_1, None),
        (ingest_1, ratio_1),
        (floor_2, None),
        (ingest_2, ratio_2),
    ):
        shown = f"{ratio:5.2f}" if ratio is not None else f"{'':5}"
        print(f"{timing.label:<{width}}  {timing.median_us:9.1f}  {timing.min_us:8.1f}  {shown}")
    print(f"(rotation against the 1-secret floor: {rotation_vs_floor_1:.2f}x)")

    passed = ratio_1 <= TARGET_RATIO and ratio_2 <= TARGET_RATIO
    verdict = "PASS" if passed else "FAIL"
    print(
        f"\ntarget: ingest <= {TARGET_RATIO:.1f} x floor -> {verdict} "
        f"(1 secret {ratio_1:.2f}x, rotation {ratio_2:.2f}x against its 2-HMAC floor)"
    )

    app_ms, baseline_ms = import_times(IMPORT_RUNS)
    print(f"\nimport time, fresh interpreter, median of {IMPORT_RUNS} runs (stage `local` env)")
    print(f"  {APP_IMPORT:<34} {app_ms:7.1f} ms")
    print(f"  {BASELINE_IMPORT:<34} {baseline_ms:7.1f} ms")
    print(f"  {'difference (app - baseline)':<34} {app_ms - baseline_ms:+7.1f} ms")

    print("\nFor the docs, docs/performance.md:\n")
    print(
        f"- Webhook work per event ({len(body)} B `{EVENT_TYPE}` event; verify, check, "
        f"build the entry): {ingest_1.median_us:.0f} µs, {ratio_1:.2f}x the floor "
        f"(HMAC-SHA256 + `json.loads`, {floor_1.median_us:.0f} µs). With two secrets "
        f"during rotation: {ingest_2.median_us:.0f} µs."
    )
    print(
        f"- Import of `app.py` (stage `local`): {app_ms:.0f} ms, against {baseline_ms:.0f} ms "
        f"for `{BASELINE_IMPORT}` ({app_ms - baseline_ms:+.0f} ms)."
    )
    print(f"- Measured with `make bench` on {machine_note()}.")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
