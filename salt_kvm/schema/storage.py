"""The records of ``kvm:pools``: a pool, its source and its volumes.

What each pool ``type`` needs comes from :mod:`salt_kvm.pool_types`, one row per type.
"""

from __future__ import annotations

from salt_kvm import pool_types
from salt_kvm.schema.fields import (
    Bool,
    Enum,
    Errors,
    List,
    Map,
    Record,
    Secret,
    Size,
    Str,
    _join,
    describe,
)
from salt_kvm.schema.names import ABSPATH, HOSTNAME, SHA256, URL_OR_PATH, VOLNAME

#: the pool types the pillar accepts (the rows of :mod:`salt_kvm.pool_types`)
POOL_TYPES = pool_types.NAMES

AUTH = Record(
    {
        "type": Enum("chap", "ceph"),
        "username": Str(r"[A-Za-z0-9_.@+-]+", max_len=255, what="a user name"),
        "secret": Secret(max_len=4096),
        "secret_uuid": Str(r"[0-9a-fA-F-]{36}", what="a UUID"),
        "secret_usage": Str(max_len=255),
    },
    required=("type", "username"),
)

SOURCE = Record(
    {
        "devices": List(
            Str(r"(?!-)[^\0\n]+", max_len=4096, what="a device path or IQN (not starting with -)"),
            min_len=1,
        ),
        "dir": Str(
            r"(?!(.*/)?\.\.(/.*)?$)[^\0\n]+",
            max_len=4096,
            what="a directory path without '..' (absolute; a share name for cifs)",
        ),
        "name": Str(
            r"[A-Za-z0-9_][A-Za-z0-9_.+/-]*",
            max_len=255,
            what="a source name (VG, Ceph pool, Gluster volume)",
        ),
        "hosts": List(HOSTNAME, min_len=1),
        "format": Str(
            r"[a-z0-9]+",
            max_len=32,
            what="a source format (nfs, glusterfs, cifs, ext4, lvm2, dos, gpt, ...)",
        ),
        "initiator": Str(
            r"iqn\.[^\s]+", max_len=223, what="an iSCSI IQN (iqn.YYYY-MM.reverse.domain:name)"
        ),
        "auth": AUTH,
    }
)
describe(
    AUTH,
    {
        "type": "``chap`` (iSCSI) or ``ceph`` (rbd).",
        "username": "The user name.",
        "secret": (
            "The secret itself, kept in a libvirt secret that salt-kvm manages; never shown in "
            "output or errors."
        ),
        "secret_uuid": "Instead of ``secret``: a libvirt secret you manage, by UUID.",
        "secret_usage": "Instead of ``secret``: a libvirt secret you manage, by usage name.",
    },
)
describe(
    SOURCE,
    {
        "devices": (
            "Block devices (``fs``, ``disk``, ``logical``); the target IQN for ``iscsi`` and "
            "``iscsi-direct``."
        ),
        "dir": "The NFS export or Gluster directory (absolute), or a CIFS share name.",
        "name": (
            "The volume group (``logical``), Ceph pool (``rbd``) or Gluster volume (``gluster``)."
        ),
        "hosts": "The servers: ``host`` or ``host:port`` (``[2001:db8::1]:3260`` for IPv6).",
        "format": (
            "The source's format: ``ext4``, ``xfs`` ... (``fs``), ``nfs``, ``glusterfs``, "
            "``cifs`` (``netfs``), ``lvm2`` (``logical``), ``dos``, ``gpt`` (``disk``)."
        ),
        "initiator": "The initiator IQN of an ``iscsi-direct`` pool.",
        "auth": "Credentials: CHAP for iSCSI, cephx for rbd.",
    },
)

VOLUME = Record(
    {
        "size": Size(),
        "format": Enum("raw", "qcow2", "vmdk"),
        "backing": Str(r"[^\0\n]+", max_len=4096),
        "source": URL_OR_PATH,
        "sha256": SHA256,
        "preallocation": Enum(True, False, "off", "metadata", "falloc", "full"),
        "force": Bool(),
        "absent": Bool(),
    }
)
describe(
    VOLUME,
    {
        "size": (
            (
                "The capacity: ``512M``, ``20G``, ``1.5T`` or bytes: ``K``/``M``/``G``/``T`` and "
                "``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024, ``KB``/``MB``/``GB``/``TB`` "
                "powers of 1000 (as in virsh). The volume grows to it; a smaller size fails "
                "unless ``force``. Required unless ``source`` or ``backing`` is given."
            ),
            "the size of the source or backing image",
        ),
        "format": (
            "``raw``, ``qcow2`` or ``vmdk``; never changed in place (clone the volume instead).",
            f"qcow2 in file pools ({pool_types.listed(pool_types.FILE_BACKED)}), raw in the others",
        ),
        "backing": (
            "A volume of the same pool (created first) or an absolute path: the new qcow2 volume "
            "is an overlay on it."
        ),
        "source": (
            "Import a local file or an http(s) URL into the volume (a password in the URL is "
            "never shown)."
        ),
        "sha256": (
            "The sha256 the imported ``source`` must have; a mismatch removes the volume again."
        ),
        "preallocation": (
            (
                "``off`` (sparse), ``metadata`` (qcow2), ``falloc`` / ``full`` / ``true`` (every "
                "byte allocated now)."
            ),
            "off",
        ),
        "force": (
            (
                "Allow a shrink, a re-import of a changed image, deleting a volume in use or "
                "backing another."
            ),
            "false",
        ),
        "absent": (
            (
                "Delete the volume (refused while a VM uses it or it backs another volume, "
                "unless ``force``)."
            ),
            "false",
        ),
    },
)

#: pool type -> the keys it needs (``target``, ``source.<key>``), from the table
_POOL_NEEDS = {t.name: t.needs for t in pool_types.TYPES}


def check_volume(vol: dict, vname: str, vpath: str, errors: Errors) -> None:
    """The cross-field rules of one volume ``vname`` (declared at ``vpath``).

    Used by the pillar (every volume of a pool) and by the ``kvm.volume_present``
    state, so both refuse the same volumes with the same messages.
    """
    if "size" not in vol and "source" not in vol and "backing" not in vol:
        errors.add(_join(vpath, "size"), "is required (or give source or backing)")
    if "sha256" in vol and "source" not in vol:
        errors.add(_join(vpath, "sha256"), "needs source")
    if "source" in vol and "backing" in vol:
        errors.add(_join(vpath, "backing"), "cannot be combined with source")
    backing = vol.get("backing")
    if backing and not backing.startswith("/"):
        if backing == vname:
            errors.add(_join(vpath, "backing"), "a volume cannot back itself")
    if vol.get("format") == "raw" and backing:
        errors.add(_join(vpath, "backing"), "a raw volume cannot have a backing file (use qcow2)")


def _check_pool(rec, path, errors):
    ptype = rec.get("type")
    if rec.get("absent"):
        return
    if ptype is None:
        errors.add(_join(path, "type"), "is required")
        return
    for need in _POOL_NEEDS.get(ptype, ()):
        if "." in need:
            sub, key = need.split(".")
            if key not in rec.get(sub, {}):
                errors.add(_join(_join(path, sub), key), f"is required for a {ptype} pool")
        elif need not in rec:
            errors.add(_join(path, need), f"is required for a {ptype} pool")
    vols = rec.get("volumes", {})
    for vname, vol in vols.items():
        if vol.get("absent"):
            continue
        check_volume(vol, vname, _join(_join(path, "volumes"), vname), errors)
    # backing chains within the pool must not loop
    for vname in vols:
        seen, cur = [], vname
        while cur in vols and vols[cur].get("backing") and cur not in seen:
            seen.append(cur)
            cur = vols[cur]["backing"]
        if cur in seen:
            errors.add(
                _join(_join(_join(path, "volumes"), vname), "backing"),
                "backing chain loops: " + " -> ".join(seen + [cur]),
            )


POOL = Record(
    {
        "type": Enum(*POOL_TYPES),
        "target": ABSPATH,
        "source": SOURCE,
        "autostart": Bool(),
        "build": Enum(True, False, "force"),
        "force": Bool(),
        "purge": Bool(),
        "absent": Bool(),
        "volumes": Map(VOLNAME, VOLUME),
    },
    check_all=_check_pool,
)
describe(
    POOL,
    {
        "type": (
            "The libvirt pool type (required unless ``absent``); what each type needs is listed "
            "below."
        ),
        "target": (
            "The directory (``dir``; the mount point of ``fs`` and ``netfs``) or the device "
            "directory (``/dev`` for ``disk``, ``/dev/disk/by-path`` for ``iscsi``)."
        ),
        "source": "Where the data lives; which keys each type needs is listed below.",
        "autostart": "Start the pool when libvirtd starts.",
        "build": (
            (
                "``true`` builds what is missing (a directory, a filesystem, a disk label, a "
                "volume group) and never overwrites existing storage; ``false`` never builds; "
                "``force`` also overwrites storage of another kind."
            ),
            "true",
        ),
        "force": ("Allow a change of ``type`` or ``source`` (the pool is redefined).", "false"),
        "purge": ("With ``absent``: also delete the volumes and the storage.", "false"),
        "absent": ("Stop and undefine the pool; its storage stays unless ``purge``.", "false"),
        "volumes": (
            "The pool's volumes by name (a file name in the pool, never a path); backing volumes "
            "are created first."
        ),
    },
)
