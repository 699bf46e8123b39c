"""One condition, two checks: SQLite's `holds` must answer as DynamoDB does.

The claim and order rules are written once (stores/claims.py, stores/state.py) and each
store checks them its own way: SQLite in Python, DynamoDB as a ConditionExpression. Here
moto's DynamoDB, an implementation independent of ours, is the oracle: for generated
stored items and conditions, a conditional PutItem passes exactly when `holds` says so.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_events._stores.claims import CLAIMED, DONE, held_by, takeable
from stripe_events._stores.conditions import (
    Absent,
    AllOf,
    AnyOf,
    Condition,
    Missing,
    Value,
    at_most,
    below,
    equals,
    holds,
)
from stripe_events._stores.dynamodb import ATTRIBUTES, _compiled, _typed
from stripe_events._stores.state import ORDER, not_older
from tests.conftest import REGION
from tests.helpers import create_table
from tests.sqs_poller import unique

OWNERS = st.sampled_from(["run-a", "run-b"])
TIMES = st.floats(min_value=1_700_000_000, max_value=1_700_000_010, allow_nan=False)
ORDERS = st.sampled_from(["0001#evt_a", "0001#evt_b", "0002#evt_a", "9"])
FIELDS: dict[str, Any] = {
    "claim": st.sampled_from([CLAIMED, DONE]),
    "owner": OWNERS,
    "lease_until": TIMES,
    ORDER: ORDERS,
}
STORED = st.none() | st.fixed_dictionaries({}, optional=FIELDS)


def comparisons() -> st.SearchStrategy[Condition]:
    string_fields = st.sampled_from(["claim", "owner", ORDER])
    text = st.sampled_from([CLAIMED, DONE, "run-a", "run-b", "0001#evt_b", "0002"])
    return st.one_of(
        st.builds(equals, string_fields, text),
        st.builds(below, st.just(ORDER), text),
        st.builds(at_most, st.just(ORDER), text),
        st.builds(below, st.just("lease_until"), TIMES),
        st.builds(equals, st.just("lease_until"), TIMES),
        st.builds(Missing, st.sampled_from(list(FIELDS))),
        st.just(Absent()),
    )


CONDITIONS: st.SearchStrategy[Condition] = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.builds(lambda cs: AnyOf(tuple(cs)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: AllOf(tuple(cs)), st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)
# The product's own rules, with generated parameters.
RULES: st.SearchStrategy[Condition] = st.one_of(
    st.builds(takeable, OWNERS, TIMES), st.builds(held_by, OWNERS), st.builds(not_older, ORDERS)
)


@pytest.fixture(scope="module")
def table(moto_url: str) -> str:
    name = unique("conditions")
    create_table(name, REGION)
    return name


def dynamodb_passes(table: str, stored: dict[str, Value] | None, condition: Condition) -> bool:
    client = boto3.client("dynamodb", region_name=REGION)
    key = {"pk": {"S": "item#1"}, "sk": {"S": "item"}}
    client.delete_item(TableName=table, Key=key)
    if stored is not None:
        attributes = {ATTRIBUTES.get(k, k): _typed(v) for k, v in stored.items()}
        client.put_item(TableName=table, Item={**key, **attributes})
    try:
        client.put_item(TableName=table, Item=key, **_compiled(condition))
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stored=STORED, condition=st.one_of(RULES, CONDITIONS))
def test_holds_answers_as_dynamodb_does(
    table: str, stored: dict[str, Value] | None, condition: Condition
) -> None:
    assert holds(condition, stored) == dynamodb_passes(table, stored, condition)


def test_the_claim_rule_reads_as_documented() -> None:
    now = 1_700_000_005.0
    mine = {"claim": CLAIMED, "owner": "run-a", "lease_until": now + 1}
    assert holds(takeable("run-a", now), None)  # nobody holds it
    assert holds(takeable("run-a", now), mine)  # its owner again (a retry)
    assert not holds(takeable("run-b", now), mine)  # another, while the lease runs
    assert holds(takeable("run-b", now + 2), mine)  # another, once it has ended
    assert not holds(takeable("run-b", now + 2), {**mine, "claim": DONE})  # done is done
