"""`make run`'s server, measured from outside: it answers loopback names only (DNS
rebinding), closes connections that go silent, and answers bad framing with a 400."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_events._settings import LOCAL_SECRET
from stripe_events_ops.local_server import exposure_warning
from stripe_events_testing import samples
from tests.helpers import ROOT, signed_headers
from tests.integration.test_smoke import BIN, cli, free_port, serving

IDLE = 0.6  # the server's --idle-timeout here, so that waiting it out is quick
WAIT = 5 * IDLE  # how long a client waits before it calls the server hung
TUNNEL = "tunnel.example"
ALIAS = "127.0.0.2"


def run_command(port: int) -> list[str]:
    return [
        str(BIN / "stripe-events"),
        "run",
        "--port",
        str(port),
        "--idle-timeout",
        str(IDLE),
        "--allow-host",
        TUNNEL,
    ]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(tmp_path_factory.mktemp("local-server"))}
    with serving(run_command(port), ROOT, env, port) as printed:
        yield port
    [output] = printed
    assert "Serving on" in output, output
    # Nothing it refused, timed out or dropped shows a traceback, and loopback is no exposure.
    assert "Traceback" not in output and "WARNING" not in output, output


def get(port: int, host: str, address: str = "127.0.0.1") -> tuple[int, dict[str, Any]]:
    """GET the billing route with `host` in the Host header, as a page at that name would."""
    connection = http.client.HTTPConnection(address, port, timeout=WAIT)
    try:
        connection.request("GET", "/billing/customers/cus_unknown", headers={"Host": host})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def served(answer: tuple[int, dict[str, Any]]) -> bool:
    """True when the app itself answered: it knows no such customer."""
    return answer[0] == 404 and answer[1].get("Code") == "NotFoundError"


def until_closed(connection: socket.socket) -> bytes:
    """All the server sends until it closes the connection; TimeoutError if it waits past WAIT."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def exchange(port: int, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send `request` on a connection of its own; the status and JSON body answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(request)
        head, _, body = until_closed(connection).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def webhook_head(port: int, body: bytes) -> bytes:
    headers = {
        **signed_headers(body, LOCAL_SECRET),
        "Host": f"127.0.0.1:{port}",
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    lines = ["POST /stripe/webhook HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_foreign_host_is_refused_and_loopback_names_are_served(port: int) -> None:
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert served(get(port, host)), host
    assert served(get(port, f"App.Localhost:{port}"))
    # Names a rebinding page could have: its own, whatever they start or end with.
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ):
        status, body = get(port, host)
        assert (status, body["error"]) == (403, "host_not_allowed"), host
    status, body = get(port, f"evil.example:{port}")
    assert "--allow-host evil.example." in body["message"]


def test_http_1_1_needs_one_host_and_http_1_0_may_go_without(port: int) -> None:
    path = "/billing/customers/cus_unknown"
    assert exchange(port, f"GET {path} HTTP/1.1\r\n\r\n".encode())[0] == 400
    twice = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"
    assert exchange(port, twice.encode())[0] == 400
    # No browser leaves Host out, so no web page sends this.
    assert served(exchange(port, f"GET {path} HTTP/1.0\r\n\r\n".encode()))


def test_allow_host_adds_exactly_the_names_it_is_given(port: int) -> None:
    assert served(get(port, TUNNEL))
    assert served(get(port, f"{TUNNEL.upper()}:443"))
    assert get(port, f"other.{TUNNEL}")[0] == 403
    refused = cli("run", "--allow-host", "not a host", env=dict(os.environ))
    assert refused.returncode == 2 and "not a host name or address" in refused.stderr


def test_idle_and_stalled_connections_are_closed_and_the_server_keeps_answering(
    port: int,
) -> None:
    opened = time.monotonic()
    held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(100)]
    try:
        for connection in held[::2]:  # half of them stall in the middle of their headers
            connection.sendall(b"GET /billing/customers/cus_unknown HTTP/1.1\r\nHost: local")
        assert served(get(port, "localhost"))
        assert [until_closed(connection) for connection in held] == [b""] * len(held)
        assert time.monotonic() - opened >= IDLE
    finally:
        for connection in held:
            connection.close()
    assert served(get(port, "localhost"))


def test_a_kept_alive_connection_serves_requests_until_it_idles_out(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", "/billing/customers/cus_unknown")
        answer = connection.getresponse().read()
        first = connection.sock
        time.sleep(IDLE / 3)
        connection.request("GET", "/billing/customers/cus_unknown")
        second = connection.getresponse()
        assert (second.status, second.read()) == (404, answer)
        assert connection.sock is first  # the same connection, still open
        started = time.monotonic()
        assert until_closed(first) == b""
        assert time.monotonic() - started >= IDLE / 2
    finally:
        connection.close()


def test_a_body_sent_in_pieces_is_taken_and_one_that_stops_short_is_given_up(
    port: int,
) -> None:
    body = samples.encode(samples.sample_event("customer.created", changes={"id": "cus_slow"}))
    step = len(body) // 4 + 1
    pieces = [body[n : n + step] for n in range(0, len(body), step)]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(webhook_head(port, body))
        for piece in pieces:  # each gap within the timeout, all of them past it
            time.sleep(IDLE / 3)
            connection.sendall(piece)
        answer = until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["received"] is True
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(webhook_head(port, body) + body[: len(body) // 2])
        started = time.monotonic()
        assert until_closed(connection) == b""
        assert time.monotonic() - started >= IDLE / 2


def test_a_malformed_content_length_is_answered_400_and_the_server_keeps_serving(
    port: int,
) -> None:
    def post(headers: str) -> tuple[int, dict[str, Any]]:
        request = f"POST /stripe/webhook HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n\r\n{{}}"
        return exchange(port, request.encode())

    for length in ("abc", "-1", "1.5", "+2", "", "2, 2", "1e3"):
        status, body = post(f"Content-Length: {length}")
        assert (status, body["error"]) == (400, "invalid_content_length"), length
    assert post("Content-Length: 2\r\nContent-Length: 2")[0] == 400
    # As API Gateway answers a body over its 10 MB; 5,000 digits are more than int() parses.
    for length in ("99999999999999999999", "9" * 5000):
        status, body = post(f"Content-Length: {length}")
        assert (status, body["error"]) == (413, "payload_too_large")
    assert post("Transfer-Encoding: chunked")[0] == 411
    # Leading zeros are no size: the webhook itself reads the two bytes.
    assert post(f"Content-Length: {'0' * 30}2")[1]["error"] == "missing_signature"
    assert served(get(port, "localhost"))


def test_serving_beyond_loopback_is_warned_about() -> None:
    for address in ("0.0.0.0", "192.0.2.10"):
        warning = exposure_warning(address)
        assert warning is not None and f"serving on {address}" in warning
        for point in ("other machines can reach", "no authorizer", "plain-text secret"):
            assert point in warning
    assert "every network interface" in (exposure_warning("0.0.0.0") or "")
    assert [exposure_warning(a) for a in ("127.0.0.1", ALIAS, "127.255.0.9", "::1")] == [None] * 4


def test_a_loopback_alias_is_served_with_no_warning_and_still_checks_host(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((ALIAS, 0))
        except OSError:
            pytest.skip(f"{ALIAS} is not a loopback address here (macOS has 127.0.0.1 only)")
        port = probe.getsockname()[1]
    env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*run_command(port), "--host", ALIAS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # `serving` waits on 127.0.0.1; this waits for Chalice's "Serving on", which is
        # printed once the server listens, after any warning.
        assert process.stdout is not None
        before = list(itertools.takewhile(lambda line: "Serving on" not in line, process.stdout))
        assert served(get(port, f"{ALIAS}:{port}", address=ALIAS)), before
        assert get(port, "evil.example", address=ALIAS)[0] == 403
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert not any("WARNING" in line for line in before), before
