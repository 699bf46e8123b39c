"""`make run` with the Stripe CLI: the signing secret `stripe listen` prints, accepted too.

Chalice gives a stage's variables precedence over the shell's, so a secret exported in
the shell would never reach the app, and editing .chalice/config.json would put a
personal secret in a tracked file. `stripe-events run` takes STRIPE_WEBHOOK_SECRET from
the shell, else from a git-ignored `.env` beside .chalice/, and adds it to the secrets the
stage has in .chalice/config.json: `stripe listen` deliveries are accepted, and so are
those `stripe-events send` signs with the stage's own secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

SECRET_VARIABLE = "STRIPE_WEBHOOK_SECRET"
ENV_FILE = ".env"
# What Stripe's signing secrets (the Dashboard's and `stripe listen`'s) start with.
SECRET_PREFIX = "whsec_"


class NotASigningSecret(ValueError):
    pass


@dataclass(frozen=True)
class AddedSecrets:
    """The stage's STRIPE_WEBHOOK_SECRET with the added secrets, and where they came from."""

    value: str
    origin: str  # "the shell" or the path of the .env file
    count: int


def added_secrets(
    project: Path, stage_env: Mapping[str, str], environ: Mapping[str, str]
) -> AddedSecrets | None:
    """The secrets to accept besides the stage's own, or None when there are none to add.

    Only a stage that keeps its secret in .chalice/config.json (stage `local`) takes
    more: a deployed stage reads its secret from SSM, and refuses one in plain text.
    """
    extra, origin = environ.get(SECRET_VARIABLE, "").strip(), "the shell"
    if not extra:
        found = dotenv_values(project / ENV_FILE).get(SECRET_VARIABLE) or ""
        extra, origin = found.strip(), str(project / ENV_FILE)
    own = stage_env.get(SECRET_VARIABLE, "").strip()
    if not extra or not own:
        return None
    added = [s.strip() for s in extra.split(",") if s.strip()]
    for secret in added:
        if not secret.startswith(SECRET_PREFIX):
            # Never the value itself: it may be some other credential pasted by mistake.
            raise NotASigningSecret(
                f"{SECRET_VARIABLE} from {origin} is not a webhook signing secret: it should "
                f"start with {SECRET_PREFIX}, as the one `stripe listen` prints does"
            )
    secrets = [s.strip() for s in own.split(",") if s.strip()]
    combined = list(dict.fromkeys([*secrets, *added]))
    return AddedSecrets(",".join(combined), origin, len(combined) - len(secrets))
