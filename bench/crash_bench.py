"""kill -9 of `make run` mid-burst: every acknowledged event is handled or listed.

Each round starts the local server on its own state, sends a burst of signed deliveries
of several types from concurrent senders, and kills the server's process group with
SIGKILL while they are in flight. Then, as Stripe would:

1. the server is started again on the same state, and every delivery that got no answer
   is made once more at once, inside the dead runs' leases: a 2xx must mean that the
   event's handlers have all run (its oracle: each event's outcomes, read from the
   ledger, against what the app's routers run for its type); a dead run's claim gets 503;
2. once the leases are over, `stripe-events failures --json` must list every event that
   is still left with a handler undone;
3. every delivery that got no 2xx is delivered again, with a pause between tries, until
   each one is acknowledged;
4. `stripe-events replay --failed` runs what is left, and every acknowledged event must
   then have an `ok` outcome for each of its handlers.

    make bench-crash                      # 3 rounds of 60 events, 16 senders
    .venv/bin/python bench/crash_bench.py --rounds 5 --events 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `python bench/crash_bench.py` puts bench/ on sys.path, not the root that holds tests/.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lambda_stage import new_events  # noqa: E402

from stripe_events._router import RulePattern  # noqa: E402
from stripe_events_local.sqlite import SqliteStore  # noqa: E402
from stripe_events_ops.project import routing_app  # noqa: E402
from tests.integration.test_smoke import BIN, Server, free_port, wait_for_port  # noqa: E402

TYPES = (
    "customer.updated",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "checkout.session.completed",
    "charge.dispute.created",
    "payment_intent.succeeded",
)
# A local run's lease: LocalLambdaContext's 60 s and the clock skew of a second.
LEASE_SECONDS = 61.0
REDELIVERY_PAUSE_SECONDS = 5.0
REDELIVERY_BUDGET_SECONDS = 180.0


def log(message: str) -> None:
    print(f"[crash-bench] {message}", file=sys.stderr, flush=True)


def expected_handlers() -> dict[str, list[str]]:
    """Event type -> the handlers the app runs for it, across its functions."""
    handlers: dict[str, list[str]] = {}
    for source in routing_app(ROOT).event_sources:
        pattern = getattr(source, "event_pattern", None)
        if isinstance(pattern, RulePattern):
            for event_type in TYPES:
                names = [h.name for h in pattern.router.handlers_for(event_type)]
                handlers.setdefault(event_type, []).extend(names)
    return handlers


@dataclass
class Round:
    events: int
    acknowledged_before_kill: int = 0
    unanswered_at_kill: int = 0
    answered_503: int = 0  # redeliveries inside the leases, refused: a dead run held the event
    acknowledged_undone: list[str] = field(default_factory=list)  # 2xx with a handler undone
    left_undone: int = 0  # events with a handler undone once the leases were over
    listed: int = 0  # of those, listed by `failures`
    redeliveries: int = 0
    replayed: int = 0
    lost: list[str] = field(default_factory=list)  # acknowledged, never handled


@contextmanager
def local_server(state: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(state)}
    command = [str(BIN / "stripe-events"), "run", "--port", str(port)]
    with (state / "server.log").open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for_port(port, process, 60)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def post(server: Server, event: dict[str, Any]) -> int:
    """The delivery's HTTP status; 0 when no answer came (the server died)."""
    try:
        return server.post(event)[0]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def undone(store: SqliteStore, event: dict[str, Any], handlers: dict[str, list[str]]) -> bool:
    entry = store.event(event["id"])
    outcomes = {} if entry is None else entry.handlers
    return any(
        name not in outcomes or outcomes[name].status != "ok" for name in handlers[event["type"]]
    )


def cli(state: Path, *args: str) -> str:
    env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(state)}
    result = subprocess.run(
        [str(BIN / "stripe-events"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.stdout


def crash_round(count: int, senders: int, rng: random.Random) -> Round:
    handlers = expected_handlers()
    events = [e for t in TYPES for e in new_events(t, -(-count // len(TYPES)), False)][:count]
    rng.shuffle(events)
    result = Round(len(events))
    with tempfile.TemporaryDirectory(prefix="stripe-events-crash-") as folder:
        state = Path(folder)
        port = free_port()
        server = Server(port, {}, state)
        answers: dict[str, int] = {}
        with local_server(state, port) as process:
            answered = threading.Semaphore(0)

            def deliver(event: dict[str, Any]) -> None:
                answers[event["id"]] = post(server, event)
                answered.release()

            with ThreadPoolExecutor(max_workers=senders) as pool:
                for event in events:
                    pool.submit(deliver, event)
                # Kill while about a third of the burst is still to come.
                for _ in range(rng.randint(count // 4, count // 2)):
                    answered.acquire()
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        result.acknowledged_before_kill = sum(200 <= s < 300 for s in answers.values())
        result.unanswered_at_kill = sum(s == 0 for s in answers.values())
        store = SqliteStore(state / "stripe-events.sqlite3")

        with local_server(state, port):
            restarted = time.monotonic()
            log(f"killed with {result.unanswered_at_kill} deliveries unanswered")
            for event in [e for e in events if answers[e["id"]] == 0]:
                status = answers[event["id"]] = post(server, event)
                result.redeliveries += 1
                result.answered_503 += status == 503
                if 200 <= status < 300 and undone(store, event, handlers):
                    result.acknowledged_undone.append(event["id"])
            time.sleep(max(0.0, restarted + LEASE_SECONDS + 1 - time.monotonic()))
            left = {e["id"] for e in events if store.event(e["id"]) and undone(store, e, handlers)}
            listed = {row["id"] for row in json.loads(cli(state, "failures", "--json") or "[]")}
            result.left_undone, result.listed = len(left), len(left & listed)

            deadline = time.monotonic() + REDELIVERY_BUDGET_SECONDS
            pending = [e for e in events if not 200 <= answers[e["id"]] < 300]
            while pending and time.monotonic() < deadline:
                for event in pending:
                    status = post(server, event)
                    result.redeliveries += 1
                    result.answered_503 += status == 503
                    answers[event["id"]] = status
                pending = [e for e in pending if not 200 <= answers[e["id"]] < 300]
                if pending:
                    time.sleep(REDELIVERY_PAUSE_SECONDS)
            replayed = cli(state, "replay", "--failed")
            result.replayed = replayed.count(" ok")
        result.lost = [
            e["id"] for e in events if 200 <= answers[e["id"]] < 300 and undone(store, e, handlers)
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = random.randrange(10**6) if args.seed is None else args.seed
    rng = random.Random(seed)
    log(f"seed {seed}: {args.rounds} round(s) of {args.events} events, {args.senders} senders")
    rounds = []
    for n in range(args.rounds):
        log(f"round {n + 1} of {args.rounds}")
        rounds.append(crash_round(args.events, args.senders, rng))
        log(str(rounds[-1]))
    total = {
        name: sum(getattr(r, name) for r in rounds)
        for name in (
            "events",
            "acknowledged_before_kill",
            "unanswered_at_kill",
            "answered_503",
            "left_undone",
            "listed",
            "redeliveries",
        )
    }
    lost = [event for r in rounds for event in r.lost]
    hollow = [event for r in rounds for event in r.acknowledged_undone]
    print(
        f"\nkill -9 of make run, {args.rounds} round(s), seed {seed}: {total['events']} events, "
        f"{total['acknowledged_before_kill']} acknowledged before the kill, "
        f"{total['unanswered_at_kill']} unanswered. Redelivered at once: "
        f"{total['answered_503']} answered 503 (a dead run's claim), {len(hollow)} "
        f"acknowledged with a handler undone. Once the leases ended: {total['left_undone']} "
        f"events left undone, {total['listed']} of them listed by `failures`. "
        f"{total['redeliveries']} redeliveries in all; {len(lost)} acknowledged events lost."
    )
    if lost or hollow or total["listed"] != total["left_undone"]:
        raise SystemExit(
            f"FAIL: lost {lost}; acknowledged with a handler undone {hollow}; "
            f"listed {total['listed']} of {total['left_undone']}"
        )


if __name__ == "__main__":
    main()
