"""Warm Lambda containers as OS processes, delivering events at the same moment.

Threads share one interpreter (and the GIL) and hide the races that separate Lambda
containers hit. Each container here is a process of its own: it imports app.py once,
under a stage's environment, as Lambda does at a cold start; then, for each round, it
waits at a barrier with the others and calls the app's event functions with its share
of the events, as EventBridge would invoke them. A function that raises is invoked
again after a short pause, with the same request id, as Lambda retries an asynchronous
invocation.

`fulfil_order` is counted in every container (one line per call in a shared file), so
that a test can tell how many times an order was delivered across all of them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# One invocation and its retries: Lambda retries an asynchronous invocation twice over
# minutes; here a busy or failed function is retried quickly, until this budget is spent.
RETRY_BUDGET_SECONDS = 30.0
READY_SECONDS = 120.0
CRASH_EXIT_CODE = 17


class ContainerDied(Exception):
    """A container's process ended during a round (a crash the test asked for)."""


@dataclass
class Delivered:
    """What one container did with one event: its invocations and the last error."""

    event_id: str
    function: str
    invocations: int = 0
    error: str | None = None


@dataclass
class FakeLambdaContext:
    """What Powertools and Chalice read of Lambda's context object."""

    deadline: float
    function_name: str = "stripe-events-test"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:stripe-events"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


def eventbridge_event(detail: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge invokes a function with it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail["type"],
        "source": "stripe.webhook",
        "account": "000000000000",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(detail["created"])),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def _invoke(module: Any, function: str, event: dict[str, Any], timeout_seconds: float) -> Delivered:
    delivered = Delivered(event["detail"]["id"], function)
    deadline = time.monotonic() + RETRY_BUDGET_SECONDS
    # Lambda retries an asynchronous invocation under its request id.
    request_id = str(uuid.uuid4())
    while True:
        delivered.invocations += 1
        context = FakeLambdaContext(time.time() + timeout_seconds, aws_request_id=request_id)
        try:
            module.app.handler_map[function](event, context)
            delivered.error = None
            return delivered
        except Exception as error:
            delivered.error = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            return delivered
        time.sleep(random.uniform(0.02, 0.1))


def _count_fulfilments(fulfilments: str, crash_on: set[str]) -> None:
    from chalicelib.resources import checkout

    original = checkout.fulfil_order

    def counted(session: dict[str, Any], ctx: Any) -> None:
        if session["id"] in crash_on:
            os._exit(CRASH_EXIT_CODE)  # the container dies mid-fulfilment: no cleanup at all
        time.sleep(0.02)  # real fulfilment calls other services: a window for the others
        with open(fulfilments, "a", encoding="utf-8") as f:  # O_APPEND: whole lines
            f.write(json.dumps({"session": session["id"], "pid": os.getpid()}) + "\n")
        original(session, ctx)

    checkout.fulfil_order = counted


def _container(
    env: dict[str, str],
    pipe: Connection,
    barrier: Any,
    log: str,
    fulfilments: str,
    crash_on: Sequence[str],
) -> None:
    """One container's life: a cold start, then rounds until told to stop."""
    sys.stdout = sys.stderr = open(log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    from chalice.app import CloudWatchEventConfig

    from stripe_events._pattern import matches
    from stripe_events_ops.project import import_app

    os.environ.update(env)
    module = import_app(env, Path(__file__).resolve().parents[1])
    _count_fulfilments(fulfilments, set(crash_on))
    sources = [s for s in module.app.event_sources if isinstance(s, CloudWatchEventConfig)]
    pipe.send("ready")
    while (task := pipe.recv()) is not None:
        details, timeout_seconds = task
        results: list[Delivered] = []
        barrier.wait()
        for detail in details:
            event = eventbridge_event(detail)
            for source in sources:
                if matches(source.event_pattern, event):
                    results.append(_invoke(module, source.name, event, timeout_seconds))
        pipe.send(results)


class Containers:
    """`count` warm containers of the app under `env`, started once for many rounds."""

    def __init__(
        self, env: dict[str, str], count: int, workdir: Path, crash_on: Sequence[str] = ()
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.fulfilments = workdir / "fulfilments.jsonl"
        self.fulfilments.touch()
        context = multiprocessing.get_context("spawn")  # no fork of a threaded pytest
        self.barrier = context.Barrier(count)
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for n in range(count):
            parent, child = context.Pipe()
            process = context.Process(
                target=_container,
                args=(
                    env,
                    child,
                    self.barrier,
                    str(workdir / f"container-{n}.log"),
                    str(self.fulfilments),
                    list(crash_on),
                ),
                daemon=True,
            )
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for n, pipe in enumerate(self.pipes):
            if not pipe.poll(READY_SECONDS):
                raise AssertionError(f"container {n} did not start: see {workdir}")
            assert pipe.recv() == "ready"

    def deliver_at_once(
        self, shares: Sequence[Sequence[dict[str, Any]]], timeout_seconds: float = 30.0
    ) -> list[Delivered]:
        """Each container delivers its share of events, all starting at one barrier.

        `timeout_seconds` is each invocation's Lambda timeout: what its context says is left.
        """
        if len(shares) > len(self.pipes):
            raise ValueError(f"{len(shares)} shares for {len(self.pipes)} containers")
        padded = [*shares, *[[]] * (len(self.pipes) - len(shares))]
        for pipe, share in zip(self.pipes, padded, strict=True):
            pipe.send((list(share), timeout_seconds))
        results: list[Delivered] = []
        for n, pipe in enumerate(self.pipes):
            if not pipe.poll(RETRY_BUDGET_SECONDS * 4):
                raise AssertionError(f"container {n} did not finish its round")
            try:
                results += pipe.recv()
            except EOFError:
                self.processes[n].join(timeout=10)
                code = self.processes[n].exitcode
                raise ContainerDied(f"container {n} exited with {code}") from None
        return results

    def fulfilled(self, session: str) -> int:
        lines = self.fulfilments.read_text(encoding="utf-8").splitlines()
        return sum(json.loads(line)["session"] == session for line in lines)

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if process.is_alive():
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def spread(
    events: Sequence[dict[str, Any]], containers: int, rng: random.Random
) -> list[list[Any]]:
    """The events dealt to the containers in a random order, one each, then round again."""
    shuffled = list(events)
    rng.shuffle(shuffled)
    return [shuffled[n::containers] for n in range(min(containers, len(shuffled)))]


Check = Callable[[], None]
