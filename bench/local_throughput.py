"""Throughput of `make run`, end to end: signed deliveries of distinct events per second.

The local app verifies each delivery, publishes it on the in-process bus and runs the
matching functions' handlers (state in SQLite) before it answers; a sender waits for
the answer before its next delivery, as Stripe does per endpoint connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambda_sandbox import ROOT, progress
from lambda_stage import new_events

from tests.integration.test_smoke import Server, free_port, wait_for_port

EVENT_TYPE = "customer.updated"
START_SECONDS = 60
# The first deliveries load the local bus and open the SQLite files: not measured.
WARM_UP_DELIVERIES = 3


@dataclass(frozen=True)
class Throughput:
    senders: int
    deliveries: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds


def _deliver(server: Server, events: list[dict[str, Any]], senders: int) -> float:
    """Seconds to deliver every event with `senders` at once; every answer must be 200."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        answers = list(pool.map(server.post, events))
    seconds = time.perf_counter() - started
    refused = [(status, body) for status, body in answers if status != 200]
    if refused:
        raise SystemExit(
            f"make run answered {len(refused)} of {len(events)} deliveries with other than "
            f"200; the first: {refused[0]}"
        )
    return seconds


def make_run_throughput(deliveries: int, senders: Sequence[int]) -> list[Throughput]:
    """Start `stripe-events run` as `make run` does, on a free port with its own state."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="stripe-events-bench-run-") as folder:
        state = Path(folder)
        env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(state)}
        log = state / "server.log"
        command = [
            str(Path(sys.executable).parent / "stripe-events"),
            "run",
            "--stage",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        progress(f"starting make run's server on 127.0.0.1:{port}")
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            try:
                wait_for_port(port, process, START_SECONDS)
            except AssertionError as error:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"`stripe-events run` did not serve: {error}\n{tail}") from None
            server = Server(port, env, state)
            _deliver(server, new_events(EVENT_TYPE, WARM_UP_DELIVERIES, False), 1)
            results = []
            for count in senders:
                progress(f"make run: {deliveries} deliveries, {count} sender(s)")
                events = new_events(EVENT_TYPE, deliveries, False)
                results.append(Throughput(count, deliveries, _deliver(server, events, count)))
            return results
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
