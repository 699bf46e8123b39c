"""The payload store of stage `local`: bodies too large for the bus, in a folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from stripe_events._errors import PayloadError, PayloadMissing
from stripe_events._payloads import PayloadRef, PayloadStore, _decode, _digest, _field, _name
from stripe_events._schema import EVENTS_FOLDER


class LocalPayloadStore(PayloadStore):
    kind = "local"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(self, name: str, body: str, folder: str = EVENTS_FOLDER) -> PayloadRef:
        data, sha256 = _digest(body)
        # Relative to the directory: the reference stays small and cannot name other files.
        relative = _name(folder, name, sha256)
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a dispatcher reading at the same moment sees the
        # whole body or none, never half of it.
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return {"store": self.kind, "path": relative, "bytes": len(data), "sha256": sha256}

    def load(self, ref: PayloadRef) -> str:
        relative = _field(ref, "path", self.kind)
        root = self.directory.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise PayloadError(f"the payload path {relative!r} leaves {self.directory}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PayloadMissing(f"{path} does not exist") from None
        return _decode(data, str(path))
