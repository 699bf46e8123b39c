"""Shared test helpers: load the app under a given environment, sign and post events."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import stripe

from chalicelib.stripe_events.stages import stage_environment

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_test_secret_one"


def local_stage_env() -> dict[str, str]:
    """The environment Chalice gives stage `local`, as .chalice/config.json defines it."""
    return stage_environment("local")


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_app(env: dict[str, str]) -> ModuleType:
    """Import a fresh app.py with `env` in the environment (settings are read at import)."""
    with patched_environ(env):
        sys.modules.pop("app", None)
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        return importlib.import_module("app")


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, made by the stripe library itself."""
    t = int(time.time()) if timestamp is None else timestamp
    header: str = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, t)
    return header


def signed_headers(body: bytes, secret: str = SECRET, **kwargs: Any) -> dict[str, str]:
    return {"Content-Type": "application/json", "Stripe-Signature": sign(body, secret, **kwargs)}
