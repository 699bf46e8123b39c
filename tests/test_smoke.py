"""`make run` as a user runs it: start the server, send events with the CLI, read the ledger."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.helpers import ROOT

BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listened on port {port} within {seconds} s")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "stripe-events"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_make_run_serves_the_webhook_and_runs_the_functions(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(tmp_path), "PORT": str(port)}
    server = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that the whole group (make and chalice) can be stopped
    )
    try:
        wait_for_port(port, server, seconds=60)
        url = f"http://127.0.0.1:{port}/stripe/webhook"
        for event_type in ("customer.created", "customer.updated", "account.updated"):
            sent = cli("send", event_type, "--url", url, env=env)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert '200 {"received":true' in sent.stdout
        ledger = cli("ledger", "--json", env=env)
        assert ledger.returncode == 0, ledger.stderr
        rows = json.loads(ledger.stdout)
        assert [row["type"] for row in rows] == [
            "account.updated",
            "customer.updated",
            "customer.created",
        ]
        # Published and not received: no function subscribes to account.updated.
        assert (rows[0]["handlers"], rows[0]["received_at"]) == ({}, None)
        assert all(row["handlers"] == {"customers.save_customer": "ok"} for row in rows[1:])
        # The README's curl: the customer that `send customer.created` made.
        state_url = f"http://127.0.0.1:{port}/billing/customers/cus_QXg1o8vcGmoR32"
        with urllib.request.urlopen(state_url, timeout=30) as response:
            assert json.loads(response.read())["customer"]["id"] == "cus_QXg1o8vcGmoR32"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert b"Serving on" in output, output.decode()
