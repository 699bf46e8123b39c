"""One cold start of a function of the deployment package, in the clean Lambda-like runtime.

package_bench.py starts it as
`<clean runtime>/bin/python -I -B lambda_probe.py TASK_DIR SPEC RESULT`, with the
function's environment (its `_HANDLER`, the stage's variables, AWS_ENDPOINT_URL at moto).
It imports only the standard library, and the package from TASK_DIR (Lambda's
/var/task), so it runs in the clean runtime; the development venv is not on its path.

SPEC (JSON) says what to do:
- {"mode": "import", "modules": [...]}: time the import of the modules (a baseline, or
  `app`), and the peak RSS after it;
- {"mode": "invoke", "events": [...]}: import `app`, then call the handler `_HANDLER`
  names with each event in turn, as Lambda does, each with a new context: the first
  call, then the warm ones;
- {"mode": "dispatch", ...}: import `app`, then time one conditional PutItem on the
  stage's table against dispatching an event to routers of 1 and of 5 no-op handlers,
  and count the AWS calls of each dispatch.

RESULT (JSON) gets the times in milliseconds, the peak RSS in MB, and every loaded
module that came from outside TASK_DIR and the runtime (there must be none). With
`-X importtime`, the import's lines follow the line IMPORT_MARKER on stderr.
"""

# What Lambda's runtime interface client (awslambdaric's bootstrap) has imported before
# it imports the handler's module: the import of `app` does not pay for these there.
import concurrent.futures  # noqa: F401
import decimal  # noqa: F401
import importlib
import itertools
import json
import logging  # noqa: F401
import os
import sys
import time
import traceback  # noqa: F401
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMPORT_MARKER = "lambda-probe: import starts"
# Lambda's own limit for the functions is 60 s; the handlers read what is left of it.
TIMEOUT_SECONDS = 30.0


class LambdaContext:
    """What Lambda passes as `context`: the attributes Chalice and Powertools read."""

    def __init__(self, request_id: str) -> None:
        name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        region = os.environ["AWS_REGION"]
        self.function_name = name
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"2024/01/01/[$LATEST]{request_id}"
        self._deadline = time.monotonic() + TIMEOUT_SECONDS

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def new_context(n: int) -> LambdaContext:
    return LambdaContext(f"00000000-0000-4000-8000-{n:012d}")


def timed_import(modules: list[str]) -> float:
    sys.stderr.write(IMPORT_MARKER + "\n")
    sys.stderr.flush()  # before the interpreter's own -X importtime lines
    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return (time.perf_counter() - started) * 1000


def handler_function() -> Callable[[Any, Any], Any]:
    """The function `_HANDLER` names, found as Lambda's bootstrap finds it."""
    module, attribute = os.environ["_HANDLER"].rsplit(".", 1)
    function: Callable[[Any, Any], Any] = getattr(importlib.import_module(module), attribute)
    return function


def check_answer(result: Any) -> None:
    """The webhook answers 200; an event function returns handler -> "ok" for every handler."""
    if isinstance(result, dict) and "statusCode" in result:
        if result["statusCode"] != 200:
            raise SystemExit(f"the webhook answered {result['statusCode']}: {result.get('body')}")
    elif not isinstance(result, dict) or not result or set(result.values()) != {"ok"}:
        raise SystemExit(f"the function's handlers did not all succeed: {result!r}")


def invoke(events: list[dict[str, Any]]) -> list[float]:
    """Milliseconds of each call, the first (cold) one first."""
    function = handler_function()
    times: list[float] = []
    for n, event in enumerate(events):
        context = new_context(n)
        started = time.perf_counter()
        result = function(event, context)
        times.append((time.perf_counter() - started) * 1000)
        check_answer(result)
    return times


def noop_router(size: int, event_type: str) -> Any:
    """A router of `size` handlers of `event_type` that do nothing."""
    from stripe_events._router import Router

    router = Router(f"bench{size}")
    for n in range(size):

        def noop(event: Any, ctx: Any) -> None:
            pass

        noop.__name__ = f"noop{n}"
        router.on(event_type)(noop)
    return router


def dispatch_overhead(spec: dict[str, Any]) -> dict[str, Any]:
    """One conditional write against the dispatch of one event to 1 and to 5 no-op handlers."""
    import boto3
    from botocore.client import BaseClient
    from chalice.app import CloudWatchEvent

    app = importlib.import_module("app")
    events: list[dict[str, Any]] = list(spec["events"])
    sizes: list[int] = spec["handlers"]
    event_type = events[0]["detail-type"]
    routers = {size: noop_router(size, event_type) for size in sizes}
    contexts = itertools.count()

    def dispatch(size: int) -> float:
        event = events.pop()
        context: Any = new_context(next(contexts))  # Chalice's hint says dict; Lambda's is this
        started = time.perf_counter()
        outcomes = app.events.dispatch(routers[size], CloudWatchEvent(event, context))
        elapsed = (time.perf_counter() - started) * 1000
        if len(outcomes) != size or set(outcomes.values()) != {"ok"}:
            raise SystemExit(f"dispatch to {size} no-op handlers returned {outcomes!r}")
        return elapsed

    client = boto3.client("dynamodb", region_name=os.environ["AWS_REGION"])
    table = os.environ["STRIPE_EVENTS_TABLE"]
    writes = itertools.count()

    def put() -> float:
        item = {"pk": {"S": f"bench#{next(writes)}"}, "sk": {"S": "item"}, "body": {"S": "{}"}}
        started = time.perf_counter()
        client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return (time.perf_counter() - started) * 1000

    # The first of each pays for the clients, the secrets and the connections: not measured.
    put()
    for size in sizes:
        dispatch(size)
    put_ms = [put() for _ in range(spec["put_samples"])]
    dispatch_ms: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(spec["dispatch_samples"]):
        for size in sizes:  # interleaved, so that a slow moment of moto hits every size
            dispatch_ms[size].append(dispatch(size))

    # Every AWS call goes through BaseClient._make_api_call, whichever client (the store's,
    # Powertools' idempotency layer's) makes it and whenever it was created.
    calls: dict[int, dict[str, int]] = {}
    original = BaseClient._make_api_call

    for size in sizes:
        counted: dict[str, int] = {}

        def counting(
            client: Any, operation: str, params: Any, counted: dict[str, int] = counted
        ) -> Any:
            key = f"{client.meta.service_model.service_name}.{operation}"
            counted[key] = counted.get(key, 0) + 1
            return original(client, operation, params)

        BaseClient._make_api_call = counting
        try:
            dispatch(size)
        finally:
            BaseClient._make_api_call = original
        calls[size] = counted
    return {
        "put_ms": put_ms,
        "dispatch_ms": {str(size): times for size, times in dispatch_ms.items()},
        "calls": {str(size): counted for size, counted in calls.items()},
    }


def foreign_modules(task_dir: Path) -> list[str]:
    """Loaded modules from anywhere but the package, the runtime and the standard library."""
    roots = [task_dir.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    probe = Path(__file__).resolve()  # also loaded as __mp_main__ once multiprocessing is
    found = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        resolved = Path(path).resolve()
        if resolved != probe and not any(resolved.is_relative_to(root) for root in roots):
            found.append(f"{name} ({resolved})")
    return sorted(found)


def peak_rss_mb() -> float:
    """The process's peak resident set, in MB: VmHWM, which starts afresh at exec.

    getrusage's ru_maxrss would not do: Linux carries it over exec from the forked
    parent, so every probe would report at least the benchmark's own peak.
    """
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise SystemExit("no VmHWM in /proc/self/status: the probe needs Linux")


def main() -> None:
    task_dir, spec_path, result_path = (Path(arg) for arg in sys.argv[1:4])
    # Lambda's sys.path starts with /var/task; -I left out the script's own folder.
    sys.path.insert(0, str(task_dir))
    spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))
    mode = spec["mode"]
    modules = spec["modules"] if mode == "import" else ["app"]
    result: dict[str, Any] = {"import_ms": timed_import(modules)}
    if mode == "invoke":
        result["call_ms"] = invoke(spec["events"])
    elif mode == "dispatch":
        result.update(dispatch_overhead(spec))
    result["peak_rss_mb"] = peak_rss_mb()
    result["foreign_modules"] = foreign_modules(task_dir)
    result["python"] = sys.version.split()[0]
    result_path.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
