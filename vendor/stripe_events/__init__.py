"""The pluggable core: it knows Stripe and AWS, and nothing about the business.

Resource modules need only `Router` and `Context` from here; app.py uses `StripeEvents`
from `stripe_events.core`.
"""

from stripe_events.context import Context
from stripe_events.router import Router

__all__ = ["Context", "Router"]
