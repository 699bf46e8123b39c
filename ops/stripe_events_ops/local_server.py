"""`make run`: the app on loopback, served as `chalice local` serves it, taking bursts.

`chalice local` listens with socketserver's default backlog of 5 connections: a burst
of 20 deliveries at once (the Stripe CLI forwards bursts) had a connection reset, which
Stripe counts as a failed delivery. This is Chalice's own server, built the way
`chalice local --no-autoreload` builds it, with a backlog of LISTEN_BACKLOG.

Its request handler trusts every request, and that, measured from outside, let a web page
read the billing route through DNS rebinding (any Host was answered), let one stalled
connection hold a thread for ever, and dropped a malformed Content-Length with a traceback.
GuardedHandler is Chalice's handler with those requests refused before the app runs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, cast

import click
from chalice.cli.factory import CLIFactory
from chalice.deploy.validate import validate_routes
from chalice.local import ChaliceRequestHandler, LocalDevServer, ThreadedHTTPServer

from stripe_events._router import RulePattern

# Deliveries that may wait to be accepted at once; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 128
# API Gateway's own limit: a larger body never reaches the app once deployed either.
MAX_BODY_BYTES = 10 * 1024 * 1024

LOOPBACK_NAMES = "localhost (and *.localhost), 127.0.0.1 and [::1]"
HOST = re.compile(r"\[(?P<ipv6>[0-9a-f:.]+)\](?::[0-9]*)?|(?P<name>[a-z0-9_.-]+)(?::[0-9]*)?")

Refusal = tuple[int, str, str]


class BurstServer(ThreadedHTTPServer):
    request_queue_size = LISTEN_BACKLOG


def host_name(value: str) -> str | None:
    """The name a Host header (or --allow-host) gives, in lower case, without its port or a
    final dot; None when it is not a host."""
    match = HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    if match["ipv6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ipv6"]))
        except ValueError:
            return None
    return match["name"].removesuffix(".") or None


def is_loopback(name: str) -> bool:
    # Browsers resolve *.localhost to loopback themselves (RFC 6761), and an address is
    # no name that DNS could rebind.
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(address: str) -> str | None:
    """What to tell whoever serves on the bound `address` when other machines can reach it."""
    if is_loopback(address):
        return None
    every = " (every network interface)" if ipaddress.ip_address(address).is_unspecified else ""
    return (
        f"WARNING: serving on {address}{every}, not on loopback: other machines can reach "
        "this server. It is for development only: GET /billing/customers/{id} has no "
        "authorizer here, and stage local verifies deliveries with the plain-text secret of "
        ".chalice/config.json, so anyone who can connect can read billing state and post "
        "events. The Host check stops web pages, not them; add --allow-host NAME for the name "
        "they use. Serve on 127.0.0.1 unless that is what you want."
    )


@dataclass(frozen=True)
class Policy:
    """Which requests the server takes before the app sees them."""

    allowed_hosts: frozenset[str]
    idle_timeout: float

    @classmethod
    def of(cls, allowed_hosts: Iterable[str], idle_timeout: float) -> Policy:
        names = {value: host_name(value) for value in allowed_hosts}
        if bad := [value for value, name in names.items() if name is None]:
            raise ValueError(f"not a host name or address: {', '.join(map(repr, bad))}")
        return cls(frozenset(name for name in names.values() if name), idle_timeout)

    def refusal(self, headers: Message, version: str) -> Refusal | None:
        """(status, error, message) for a request with these headers, or None to take it."""
        return self._host_refusal(headers, version) or self._length_refusal(headers)

    def _host_refusal(self, headers: Message, version: str) -> Refusal | None:
        hosts = headers.get_all("Host", [])
        if not hosts:
            # HTTP/1.1 requires Host (RFC 9112, 3.2). Browsers always send it, so an older
            # request without one comes from no web page, and is taken.
            if version >= "HTTP/1.1":
                return 400, "missing_host", "An HTTP/1.1 request must have a Host header."
            return None
        name = host_name(hosts[0]) if len(hosts) == 1 else None
        if name is None:
            return 400, "malformed_host", "The request needs one Host header: a name or address."
        if is_loopback(name) or name in self.allowed_hosts:
            return None
        shown = f"[{name}]" if ":" in name else name
        return (
            403,
            "host_not_allowed",
            f"Host {shown} is not allowed: this server answers {LOOPBACK_NAMES} only, so "
            f"that no web page reaches it through DNS rebinding. To serve it under this name, "
            f"run it with --allow-host {shown}.",
        )

    def _length_refusal(self, headers: Message) -> Refusal | None:
        if "Transfer-Encoding" in headers:
            # Chalice's handler reads Content-Length only: it would take a chunked body
            # for the next request.
            return 411, "length_required", "Send the body with a Content-Length, not chunked."
        lengths = headers.get_all("Content-Length", [])
        if not lengths:
            return None
        value = lengths[0].strip()
        if len(lengths) > 1 or not (value.isascii() and value.isdigit()):
            return 400, "invalid_content_length", "Give one Content-Length: a number of bytes."
        # Its digits are counted first: int() refuses more than 4,300 of them.
        digits = value.lstrip("0")
        if len(digits) > len(str(MAX_BODY_BYTES)) or int(value) > MAX_BODY_BYTES:
            return 413, "payload_too_large", f"The body may have at most {MAX_BODY_BYTES} bytes."
        return None


class GuardedHandler(ChaliceRequestHandler):
    def __init__(self, *args: Any, policy: Policy, **kwargs: Any) -> None:
        self.policy = policy  # before Chalice's __init__, which serves the connection
        super().__init__(*args, **kwargs)

    def setup(self) -> None:
        self.request.settimeout(self.policy.idle_timeout)
        super().setup()

    def handle_one_request(self) -> None:
        # Browsers and the Stripe CLI keep connections open for reuse: one that idles out
        # between requests is closed without the "Request timed out" of one that stalled.
        try:
            idle_out = not cast(io.BufferedReader, self.rfile).peek(1)
        except TimeoutError:
            idle_out = True
        if idle_out:
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        return bool(super().parse_request()) and self._admitted()

    def handle_expect_100(self) -> bool:
        # Refused before the client is told to send a body that would be thrown away.
        return self._admitted() and bool(super().handle_expect_100())

    def _admitted(self) -> bool:
        refusal = self.policy.refusal(self.headers, self.request_version)
        if refusal is None:
            return True
        status, error, message = refusal
        body = json.dumps({"error": error, "message": message})
        # The body, if any, is left unread: the connection cannot serve another request.
        self._send_http_response(status, {"Connection": "close"}, body)
        return False


def banner(app: Any, base: str, secrets_from: str, state_dir: str) -> list[str]:
    """What the server is about to serve: the URLs to use, and each function's handlers."""
    functions = [
        (source.name, [h.name for h in source.event_pattern.router.handlers])
        for source in app.event_sources
        if isinstance(getattr(source, "event_pattern", None), RulePattern)
    ]
    width = max((len(name) for name, _ in functions), default=0)
    return [
        f"webhook    POST {base}/stripe/webhook  (paste it in `stripe listen --forward-to`)",
        "secrets    " + (secrets_from or "the stage's own"),
        *(
            f"{'functions' if n == 0 else '':<10} {name:<{width}}  {', '.join(handlers)}"
            for n, (name, handlers) in enumerate(functions)
        ),
        f"billing    GET {base}/billing/customers/{{customer_id}}",
        f"state      {state_dir}/ (SQLite: ledger, state, outbox); `make reset` empties it",
    ]


def serve(
    project_dir: Path,
    stage: str,
    host: str,
    port: int,
    policy: Policy,
    variables: dict[str, str] | None = None,
    secrets_from: str = "",
) -> None:
    """Serve the app of `project_dir` under `stage` until interrupted; `variables` win over
    the stage's own, as a user's parameters to Chalice's config do."""
    factory = CLIFactory(str(project_dir), environ=os.environ)
    params = {"environment_variables": variables} if variables else None
    config = factory.create_config_obj(chalice_stage_name=stage, user_provided_params=params)
    validate_routes(config.chalice_app.routes)
    # As `chalice local` does: the app's log lines on stdout, as Lambda shows them.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    handler = functools.partial(GuardedHandler, policy=policy)
    try:
        server = LocalDevServer(
            config.chalice_app, config, host, port, handler_cls=handler, server_cls=BurstServer
        )
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise click.ClickException(
            f"port {port} is in use (another `make run`?): stop it, or serve on another port "
            f"with `make run PORT={port + 1}`"
        ) from None
    if warning := exposure_warning(server.server.server_address[0]):
        print(warning, file=sys.stderr, flush=True)
    address = host if ":" not in host else f"[{host}]"
    state_dir = os.environ.get("STRIPE_EVENTS_STATE_DIR") or ".state"
    lines = banner(config.chalice_app, f"http://{address}:{port}", secrets_from, state_dir)
    print("\n".join(lines), flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it, without a traceback
        server.serve_forever()
