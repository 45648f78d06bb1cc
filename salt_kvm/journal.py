"""Marks that make long volume operations crash-safe, and what an import brought.

Import, clone and wipe write a volume for a long time; the process doing it
can be killed at any point (``kill -9``, a minion restart, a lost host). So
before it writes, salt-kvm records an *incomplete* mark for the volume, and
only when the content is complete and checked does the mark become a
*complete* record (an import's: the sha256 and the length of what was
imported) or go away. A later run that finds an incomplete mark never takes
the volume for done: the state redoes an interrupted import, and the
execution functions redo their own interrupted operation or name it.

The marks live in :data:`ROOT` (one small JSON file per volume, 0600),
keyed by the pool's UUID and the volume's name (a mark is written before the
volume exists, so a kill between libvirt creating it and the first byte is
seen too), and hold the volume's identity once it exists (the file's device
and inode, or the block device's number), so a volume deleted and made
again by other means is not mistaken for the marked one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from typing import Any, Optional

from salt_kvm import depends

#: where the marks live (the directory of salt-kvm's host-local state)
ROOT = "/var/lib/salt-kvm/volumes"


def _file(name):
    return os.path.join(ROOT, hashlib.sha256(name.encode()).hexdigest()[:32] + ".json")


def _ident(path):
    ident = depends.identity(path)
    return list(ident) if ident and ident[0] in ("file", "blk") else None


def volume_key(pool_uuid: str, name: str) -> str:
    """The journal key of volume ``name`` of the pool with ``pool_uuid``."""
    return f"{pool_uuid}/{name}"


def read(key: str, path: Optional[str]) -> Optional[dict[str, Any]]:
    """The record of volume ``key`` (:func:`volume_key`) at ``path``, or None
    (also when the record is of another object that had the same name)."""
    try:
        with open(_file(key), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if record.get("ident") is not None and path is not None and record["ident"] != _ident(path):
        return None
    return record


def write(key: str, path: Optional[str], **fields: Any) -> dict[str, Any]:
    """Record ``fields`` for the volume (atomically: a crash leaves the old record or the new
    one)."""
    os.makedirs(ROOT, mode=0o700, exist_ok=True)
    record = dict(
        fields,
        key=key,
        path=path,
        ident=_ident(path) if path else None,
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    fd, tmp = tempfile.mkstemp(dir=ROOT, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, _file(key))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return record


def begin(key: str, path: Optional[str], op: str, **fields: Any) -> dict[str, Any]:
    """Mark the volume incomplete: ``op`` (import, clone, wipe) is about to write it."""
    return write(key, path, state="incomplete", op=op, **fields)


def drop(key: str) -> None:
    """Forget the record of ``key`` (none: nothing to do)."""
    with contextlib.suppress(OSError):
        os.unlink(_file(key))


def incomplete(key: str, path: Optional[str]) -> Optional[dict[str, Any]]:
    """The interrupted operation's record, or None."""
    record = read(key, path)
    return record if record and record.get("state") == "incomplete" else None
