"""Where the ledger, the state and the claims live: contracts by concern (ledger.py,
state.py, claims.py, one Store in base.py) and the DynamoDB backend."""

from stripe_events._stores.base import RUNS, Store
from stripe_events._stores.claims import Claim
from stripe_events._stores.state import State

__all__ = ["RUNS", "Claim", "State", "Store"]
