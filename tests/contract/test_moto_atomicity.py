"""The session's moto server keeps DynamoDB's conditional writes atomic under concurrency.

Several threads write each key at the same moment, under the conditions the store uses.
DynamoDB lets exactly one `attribute_not_exists` write of a key pass, and keeps the
newest of ordered writes. moto reads the item, checks the condition and then stores the
new item, with no lock, so on a server that runs requests at once (`ThreadedMotoServer`)
two writes can pass; the session's server (tests/moto_server.py) runs one request at a
time, and must not.

A manual run races both kinds of server and prints how often moto broke atomicity:

    .venv/bin/python -m tests.contract.test_moto_atomicity [--keys 40] [--contenders 4]
        [--fields 100]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from stripe_events._stores.dynamodb import _compiled
from stripe_events._stores.state import not_older
from tests.moto_server import moto_server

REGION = "us-east-1"
KEYS = 40
CONTENDERS = 4
# Two things widen moto's window so that these tests would see it within a few dozen keys
# (on moto as is, most of them: see the manual run). The window holds the building of the
# new item, whose cost grows with the square of its attributes (moto's LimitedSizeDict
# sums the item's size at each one): so FIELDS attributes. And CPython lets another
# thread take the GIL only every 5 ms (of wall time: a busy machine, as in the full run
# that saw the race, switches inside a request far more often); so 0.1 ms here.
FIELDS = 100
SWITCH_INTERVAL = 1e-4


@dataclass(frozen=True)
class Race:
    """Per key, how many conditional writes passed, and whose write is stored."""

    winners: list[int]
    stored: list[int]


def client(url: str) -> Any:
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # A retried write could pass twice on its own account.
        config=Config(retries={"total_max_attempts": 1}),
    )


def create_table(url: str) -> str:
    name = f"atomicity-{uuid.uuid4().hex[:8]}"
    client(url).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@contextmanager
def frequent_thread_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def race(url: str, keys: int, contenders: int, *, ordered: bool, fields: int = FIELDS) -> Race:
    """Each contender n writes every key with order n, all of them at once for each key:
    only if the key is new, or (`ordered`) only over an older order, as snapshots are."""
    table = create_table(url)
    names = [uuid.uuid4().hex for _ in range(keys)]
    clients = [client(url) for _ in range(contenders)]
    for each in clients:
        each.describe_table(TableName=table)  # connected before the first round
    padding = {f"field{i}": {"S": "x"} for i in range(fields)}
    start = threading.Barrier(contenders)
    passed: Counter[str] = Counter()
    counting = threading.Lock()
    failures: list[BaseException] = []

    def contend(n: int) -> None:
        dynamodb = clients[n]
        order = {"S": str(n)}  # one digit: compares as the number does
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if ordered:
            # The store's own condition, as it compiles it.
            condition = _compiled(not_older(order["S"]))
        try:
            for name in names:
                start.wait()
                try:
                    dynamodb.put_item(
                        TableName=table,
                        Item={"pk": {"S": name}, "order_key": order, **padding},
                        **condition,
                    )
                except dynamodb.exceptions.ConditionalCheckFailedException:
                    continue
                with counting:
                    passed[name] += 1
        except BaseException as error:
            failures.append(error)
            start.abort()  # the others would wait for this one forever

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    with frequent_thread_switches():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    items = [
        clients[0].get_item(TableName=table, Key={"pk": {"S": name}}, ConsistentRead=True)["Item"]
        for name in names
    ]
    return Race([passed[name] for name in names], [int(i["order_key"]["S"]) for i in items])


def test_one_write_of_a_new_key_passes(moto_url: str) -> None:
    result = race(moto_url, KEYS, CONTENDERS, ordered=False)
    assert Counter(result.winners) == {1: KEYS}


def test_the_newest_of_ordered_writes_is_stored(moto_url: str) -> None:
    result = race(moto_url, KEYS, CONTENDERS, ordered=True)
    assert Counter(result.stored) == {CONTENDERS - 1: KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=KEYS)
    parser.add_argument("--contenders", type=int, default=CONTENDERS)
    parser.add_argument("--fields", type=int, default=FIELDS, help="attributes of each item")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    for serialized in (False, True):
        with moto_server(serialized=serialized) as url:
            new = race(url, args.keys, args.contenders, ordered=False, fields=args.fields)
            ordered = race(url, args.keys, args.contenders, ordered=True, fields=args.fields)
        twice = sum(1 for w in new.winners if w > 1)
        stale = sum(1 for s in ordered.stored if s != args.contenders - 1)
        print(
            f"{'serialized' if serialized else 'moto as is'}: {args.contenders} threads, "
            f"{args.keys} keys each way, {args.fields} attributes; "
            f"new keys with more than one winner: {twice} "
            f"({dict(sorted(Counter(new.winners).items()))}); "
            f"ordered keys left with an older write: {stale}"
        )


if __name__ == "__main__":
    main()
