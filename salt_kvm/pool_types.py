"""libvirt storage pool types: one row per type, the single source of truth.

Everything salt-kvm knows about a pool type is in its :class:`PoolType` row:
the keys the pillar requires for it (:mod:`salt_kvm.schema.storage`), what
``build`` does and whether libvirt may overwrite storage doing it
(:func:`salt_kvm.storage.build_plan`), whether its volumes are image files
with a format (:mod:`salt_kvm.storage_volumes`), how much a volume's size may
be rounded up, and what a purge deletes. The pillar reference (docs/pillar.rst)
lists the rows. Adding a pool type is adding a row here plus its tests (see
docs/development.rst, "Adding a pool type").

A type libvirt knows but this table does not (a pool defined by hand as
``zfs``, say) reads as :data:`UNKNOWN`: no build, no rounding, raw volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

MIB = 1024**2


@dataclass(frozen=True)
class PoolType:
    """What salt-kvm knows about one libvirt pool type."""

    #: libvirt's name (``<pool type='...'>``)
    name: str
    #: one line for the pillar reference
    doc: str
    #: keys the pillar must give: ``target`` or ``source.<key>`` (checked by the schema)
    needs: tuple[str, ...] = ()
    #: what ``build: true`` makes: ``mkdir`` (the target directory), ``filesystem``,
    #: ``label`` (a partition table), ``volume_group`` or ``None`` (nothing to build)
    build: Optional[str] = None
    #: libvirt's build must be told not to overwrite (VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)
    build_no_overwrite: bool = False
    #: the target directory is made by the state (and removed again on a rollback)
    makes_target_dir: bool = False
    #: volumes are image files with a format (raw, qcow2, vmdk); otherwise raw block storage
    file_backed: bool = False
    #: volumes are files in a local directory (the target) that can be listed without libvirt
    local_files: bool = False
    #: bytes a volume's size may be rounded up by the pool (LVM extents, partition alignment):
    #: a declared size that much below the current one is not a shrink
    size_rounding: int = 0
    #: a purge deletes the volumes one by one (a disk label or a LUN keeps its own)
    purge_volumes: bool = True
    #: volumes a purge leaves alone (``lost+found`` of a filesystem)
    purge_keeps: tuple[str, ...] = ()
    #: a purge deletes the storage itself (libvirt's pool delete)
    purge_storage: bool = False
    #: a failed delete of the storage is only logged (the mount point of an ``fs`` pool)
    purge_storage_may_fail: bool = False

    @property
    def volume_formats(self) -> tuple[str, ...]:
        """The volume formats the pool holds."""
        return ("raw", "qcow2", "vmdk") if self.file_backed else ("raw",)

    @property
    def default_format(self) -> str:
        """The format of a new volume when none is declared."""
        return "qcow2" if self.file_backed else "raw"


TYPES: tuple[PoolType, ...] = (
    PoolType(
        "dir",
        "A directory of image files.",
        needs=("target",),
        build="mkdir",
        makes_target_dir=True,
        file_backed=True,
        local_files=True,
        purge_storage=True,
    ),
    PoolType(
        "fs",
        "A block device with a filesystem, mounted on ``target``.",
        needs=("target", "source.devices"),
        build="filesystem",
        build_no_overwrite=True,
        makes_target_dir=True,
        file_backed=True,
        local_files=True,
        purge_keeps=("lost+found",),
        purge_storage=True,
        purge_storage_may_fail=True,
    ),
    PoolType(
        "netfs",
        "An NFS, GlusterFS or CIFS export, mounted on ``target``.",
        needs=("target", "source.hosts", "source.dir"),
        build="mkdir",
        makes_target_dir=True,
        file_backed=True,
        local_files=True,
        purge_storage=True,
    ),
    PoolType(
        "logical",
        "An LVM volume group; volumes are logical volumes.",
        needs=("source.name",),
        build="volume_group",
        build_no_overwrite=True,
        size_rounding=4 * MIB,
        purge_storage=True,
    ),
    PoolType(
        "disk",
        "A disk with a partition table; volumes are partitions.",
        needs=("target", "source.devices"),
        build="label",
        build_no_overwrite=True,
        size_rounding=2 * MIB,
        purge_volumes=False,
        purge_storage=True,
    ),
    PoolType(
        "iscsi",
        "The LUNs of an iSCSI target, through the host's initiator.",
        needs=("target", "source.hosts", "source.devices"),
        purge_volumes=False,
    ),
    PoolType(
        "iscsi-direct",
        "The LUNs of an iSCSI target, through QEMU's own initiator.",
        needs=("source.hosts", "source.devices", "source.initiator"),
        purge_volumes=False,
    ),
    PoolType(
        "rbd",
        "A Ceph RBD pool.",
        needs=("source.hosts", "source.name"),
        size_rounding=4 * MIB,
    ),
    PoolType(
        "gluster",
        "A Gluster volume, through QEMU's gluster driver.",
        needs=("source.hosts", "source.name"),
        file_backed=True,
    ),
)

#: rows by name
BY_NAME: dict[str, PoolType] = {t.name: t for t in TYPES}
#: the row of a pool type this table does not know
UNKNOWN = PoolType("", "A pool type salt-kvm does not know.")


def get(name: Optional[str]) -> PoolType:
    """The row of pool type ``name`` (:data:`UNKNOWN` for a type not in the table)."""
    return BY_NAME.get(name or "", UNKNOWN)


def names(where: Optional[Callable[[PoolType], bool]] = None) -> tuple[str, ...]:
    """Names of the types (those for which ``where(row)`` is true), in the table's order."""
    return tuple(t.name for t in TYPES if where is None or where(t))


def listed(words: tuple[str, ...]) -> str:
    """``("dir", "fs")`` -> ``"dir, fs"``, for messages and docs."""
    return ", ".join(words)


#: every type the pillar accepts
NAMES = names()
#: types whose volumes are image files with a format
FILE_BACKED = names(lambda t: t.file_backed)
#: types whose volumes are files in a local directory
LOCAL_FILES = names(lambda t: t.local_files)
