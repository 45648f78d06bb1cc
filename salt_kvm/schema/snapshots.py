"""The records of ``kvm:snapshots`` (retention) and of the snapshot functions' arguments."""

from __future__ import annotations

from salt_kvm.schema.fields import Bool, Duration, Int, Record, Str, describe
from salt_kvm.schema.names import PREFIX, SNAPNAME

RETENTION = Record(
    {
        "every": Duration(),
        "keep": Int(1, 10000),
        "prefix": PREFIX,
        "memory": Bool(),
        "external": Bool(),
        "quiesce": Bool(),
        "older_than": Duration(),
    },
    required=("every", "keep"),
)
describe(
    RETENTION,
    {
        "every": "Take a snapshot when the newest one named with ``prefix`` is older than this.",
        "keep": "How many snapshots named with ``prefix`` to keep, counting the one just taken.",
        "prefix": (
            (
                "The managed snapshots' names start with it (then the UTC time); other snapshots "
                "are never touched."
            ),
            "auto-",
        ),
        "memory": ("Include the RAM of a running VM.", "true"),
        "external": ("External snapshots (qcow2 overlays) instead of internal ones.", "false"),
        "quiesce": ("Freeze the guest's filesystems first (needs the QEMU guest agent).", "false"),
        "older_than": "Delete snapshots beyond ``keep`` only when they are at least this old.",
    },
)

#: the arguments of kvm.snapshot_create / snapshot_revert / snapshot_delete and
#: the snapshot_present / snapshot_absent states (``name`` is the VM)
SNAPSHOT = Record(
    {
        "snapshot": SNAPNAME,
        "memory": Bool(),
        "disk_only": Bool(),
        "external": Bool(),
        "quiesce": Bool(),
        "description": Str(r"[^\0]*", max_len=4096, what="a description"),
        "children": Bool(),
        "running": Bool(),
    }
)

#: the arguments of kvm.snapshot_prune (``keep: 0`` deletes every matching snapshot)
SNAPSHOT_PRUNE = Record(
    {"keep": Int(0, 10000), "older_than": Duration(), "prefix": PREFIX},
    required=("keep",),
)
