"""Where the ledger and the projections live: one contract (base.py), two stores.

`sqlite.py` for stage `local`, `dynamodb.py` on AWS; `schema.py` holds the names both
the DynamoDB store and the CloudFormation template use.
"""

from stripe_events.stores.base import RUNS, Claim, Store

__all__ = ["RUNS", "Claim", "Store"]
