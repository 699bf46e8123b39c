"""`make run`: the app on loopback, served as `chalice local` serves it, taking bursts.

`chalice local` listens with socketserver's default backlog of 5 connections: a burst
of 20 deliveries at once (the Stripe CLI forwards bursts) had a connection reset, which
Stripe counts as a failed delivery. This is Chalice's own server, built the way
`chalice local --no-autoreload` builds it, with a backlog of LISTEN_BACKLOG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from chalice.cli.factory import CLIFactory
from chalice.deploy.validate import validate_routes
from chalice.local import LocalDevServer, ThreadedHTTPServer

# Deliveries that may wait to be accepted at once; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 128


class BurstServer(ThreadedHTTPServer):
    request_queue_size = LISTEN_BACKLOG


def serve(
    project_dir: Path, stage: str, host: str, port: int, variables: dict[str, str] | None = None
) -> None:
    """Serve the app of `project_dir` under `stage` until interrupted; `variables` win over
    the stage's own, as a user's parameters to Chalice's config do."""
    factory = CLIFactory(str(project_dir), environ=os.environ)
    params = {"environment_variables": variables} if variables else None
    config = factory.create_config_obj(chalice_stage_name=stage, user_provided_params=params)
    validate_routes(config.chalice_app.routes)
    # As `chalice local` does: the app's log lines on stdout, as Lambda shows them.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    server = LocalDevServer(config.chalice_app, config, host, port, server_cls=BurstServer)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it, without a traceback
        server.serve_forever()
