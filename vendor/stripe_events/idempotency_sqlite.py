"""A Powertools idempotency persistence layer on SQLite, for stage `local`.

It keeps Powertools' semantics, as its DynamoDB layer does: a record can be taken when
it does not exist, when it has expired, or when it is in progress past its lock
expiry (a run that crashed or timed out). The check and the write happen in one
`BEGIN IMMEDIATE` transaction, so threads and processes cannot both take it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, status TEXT NOT NULL, expiry INTEGER NOT NULL,
    in_progress_expiry INTEGER, data TEXT, validation TEXT
)
"""
COLUMNS = "key, status, expiry, in_progress_expiry, data, validation"


def _record(row: tuple[str, str, int, int | None, str | None, str | None]) -> DataRecord:
    key, status, expiry, in_progress_expiry, data, validation = row
    return DataRecord(
        idempotency_key=key,
        status=status,
        expiry_timestamp=expiry,
        in_progress_expiry_timestamp=in_progress_expiry,
        response_data=data or "",
        payload_hash=validation or "",
    )


class SqlitePersistenceLayer(BasePersistenceLayer):
    def __init__(self, path: Path) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit, so BEGIN IMMEDIATE takes the lock.
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            yield db

    def _select(self, db: sqlite3.Connection, key: str) -> DataRecord | None:
        row = db.execute(f"SELECT {COLUMNS} FROM idempotency WHERE key = ?", (key,)).fetchone()
        return None if row is None else _record(row)

    def _get_record(self, idempotency_key: str) -> DataRecord:
        with self._connect() as db:
            record = self._select(db, idempotency_key)
        if record is None:
            raise IdempotencyItemNotFoundError
        return record

    def _put_record(self, data_record: DataRecord) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                old = self._select(db, data_record.idempotency_key)
                if old is not None and not _can_take(old, now):
                    raise IdempotencyItemAlreadyExistsError(old_data_record=old)
                db.execute(
                    f"INSERT OR REPLACE INTO idempotency ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        data_record.idempotency_key,
                        data_record.status,
                        data_record.expiry_timestamp,
                        data_record.in_progress_expiry_timestamp,
                        data_record.response_data,
                        data_record.payload_hash,
                    ),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _update_record(self, data_record: DataRecord) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE idempotency SET status = ?, expiry = ?, data = ?, validation = ? "
                "WHERE key = ?",
                (
                    data_record.status,
                    data_record.expiry_timestamp,
                    data_record.response_data,
                    data_record.payload_hash,
                    data_record.idempotency_key,
                ),
            )

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM idempotency WHERE key = ?", (data_record.idempotency_key,))


def _can_take(old: DataRecord, now: float) -> bool:
    """The same conditions as Powertools' DynamoDB layer puts on its conditional write."""
    if old.expiry_timestamp is not None and old.expiry_timestamp < int(now):
        return True
    return (
        old.status == STATUS_CONSTANTS["INPROGRESS"]
        and old.in_progress_expiry_timestamp is not None
        and old.in_progress_expiry_timestamp < int(now * 1000)
    )
