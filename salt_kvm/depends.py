"""Who depends on this data: the one answer every destructive path asks.

Deleting, wiping or purging a volume, and merging an external snapshot into
an image, are refused while anything else still needs the bytes they would
destroy or change. "Anything else" is read from every place a user of an
image can hide, not from one spelling of its path:

* **Identity by the resolved object**, never by the path string: a file is
  its device and inode (so a symlinked directory, a symlinked pool target,
  ``//``, ``/./`` and a bind mount all name the same file), a block device
  its device number (an LV reached as ``/dev/vg/lv`` or ``/dev/mapper/vg-lv``),
  a network volume its protocol and name (``rbd`` ``pool/image``).
* **Users** are the disks of every VM, from its inactive definition *and*,
  when it runs, its live one (a disk hot-plugged without ``--config``, or
  one only in the definition of a shut-off VM), and the disks recorded in
  every snapshot of every VM (a revert needs them).
* **Backing chains are read from the images themselves** (the qcow2 header's
  backing file; ``qemu-img info -U`` for other formats that can have one),
  for every image a VM or a snapshot uses, every volume of every running
  pool, and every file in the directory of a stopped file-backed pool, so an
  overlay outside any pool, one in a stopped pool, or a shut-off VM whose
  definition has no ``<backingStore>`` still counts.

:func:`scan` builds the :class:`Index` once for a call (it is not memoised
across calls: a destructive decision reads the host as it is now).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import struct
import subprocess  # nosec B404  # fixed argument lists, never a shell
import urllib.parse
from typing import Any, Iterable, Optional

from salt_kvm import pool_types
from salt_kvm.conn import libvirt, libvirt_caught
from salt_kvm.errors import Refused
from salt_kvm.xml import storage as sxml
from salt_kvm.xml.base import parse

QCOW2_MAGIC = b"QFI\xfb"
#: other image formats that can have a backing file (read with ``qemu-img info``)
OTHER_MAGICS = (b"QED\x00", b"KDMV", b"# Disk Descriptor", b"vhdxfile")
MAX_DEPTH = 64
#: file-backed pool types: a stopped one's target directory is scanned for images
FILE_POOLS = pool_types.LOCAL_FILES


def identity(path: Any) -> Optional[tuple[Any, ...]]:
    """What ``path`` really is: ``("file", dev, ino)``, ``("blk", rdev)``, or
    ``("path", normalised path)`` for something that does not exist here."""
    if not path:
        return None
    if isinstance(path, tuple):
        return path
    if not path.startswith("/"):
        return ("path", path)
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.normpath(path))
    if stat.S_ISBLK(st.st_mode):
        return ("blk", st.st_rdev)
    return ("file", st.st_dev, st.st_ino)


def network_identity(protocol: Optional[str], name: Optional[str]) -> tuple[Any, ...]:
    """A network disk or volume (``rbd`` ``pool/image``, ``gluster`` ``volume/path``)."""
    return ("net", protocol, (name or "").strip("/"))


def _volume_identity(ptype, path):
    if ptype == "rbd":
        return network_identity("rbd", path)
    if ptype == "gluster" and path and "://" in path:
        return network_identity("gluster", urllib.parse.urlsplit(path).path)
    return identity(path)


def _qemu_img_backing(path):
    if not shutil.which("qemu-img"):
        return None
    try:
        proc = subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", path],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    with contextlib.suppress(ValueError):
        data = json.loads(proc.stdout)
        return data.get("full-backing-filename") or data.get("backing-filename")
    return None


def backing_file(path: str) -> Optional[str]:
    """The backing file recorded in the image at ``path`` itself (absolute), or None.

    qcow2 is read from its header (no subprocess); QED, VMDK and VHDX through
    ``qemu-img info -U``; anything else (raw) has none.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
            if head[:4] == QCOW2_MAGIC and len(head) == 20:
                offset, size = struct.unpack(">QI", head[8:20])
                if not offset or not size or size > 4096:
                    return None
                fh.seek(offset)
                name = fh.read(size).decode("utf-8", "replace")
            elif head.startswith(OTHER_MAGICS):
                name = _qemu_img_backing(path)
            else:
                return None
    except OSError:
        return None
    if not name:
        return None
    if name.startswith("json:") or "://" in name or ":" in name.split("/", 1)[0]:
        return name  # a network backing (rbd:pool/img, gluster://...): kept as written
    return (
        name
        if name.startswith("/")
        else os.path.normpath(os.path.join(os.path.dirname(path), name))
    )


def chain(path: Optional[str]) -> list[str]:
    """The backing files below ``path``, nearest first (read from the images)."""
    out, seen = [], {identity(path)}
    current = path
    for _ in range(MAX_DEPTH):
        below = backing_file(current) if current and current.startswith("/") else None
        if not below:
            break
        ident = identity(below)
        if ident in seen:
            break
        seen.add(ident)
        out.append(below)
        current = below
    return out


class Index:
    """Who uses what, and what is built on what, on this host now.

    ``users[identity]``: labels of VMs (and VM snapshots) that have the object as a disk;
    ``built_on[identity]``: ``{label: top image}`` of images whose backing chain holds it;
    ``names[identity]``: a label for the object (``pool/volume`` where it is a volume).
    """

    def __init__(self) -> None:
        self.users: dict[Any, set[str]] = {}
        self.built_on: dict[Any, dict[str, Optional[str]]] = {}
        self.names: dict[Any, str] = {}

    def add_user(self, ident: Any, label: str) -> None:
        """Record that VM (or VM snapshot) ``label`` has ``ident`` as a disk."""
        if ident is not None:
            self.users.setdefault(ident, set()).add(label)

    def add_image(
        self,
        path: Optional[str],
        label: str,
        *,
        ident: Any = None,
        chain_of: Optional[list[str]] = None,
    ) -> None:
        """Record image ``path`` (named ``label``) and every image below it."""
        ident = ident or identity(path)
        if ident is None:
            return
        self.names.setdefault(ident, label)
        below = (
            chain_of
            if chain_of is not None
            else (chain(path) if path and path.startswith("/") else [])
        )
        for base in below:
            self.built_on.setdefault(identity(base), {}).setdefault(label, path)

    def used_by(self, ident: Any) -> list[str]:
        """Labels of the VMs (and VM snapshots) that have ``ident`` as a disk."""
        return sorted(self.users.get(ident, ()))

    def backing_of(self, ident: Any, exclude: Iterable[str] = ()) -> list[str]:
        """Labels of images built on ``ident`` (but those whose identity is in ``exclude``)."""
        excluded = {identity(e) for e in exclude}
        return sorted(
            label
            for label, top in self.built_on.get(ident, {}).items()
            if identity(top) not in excluded
        )

    def others_than(self, ident: Any, vm: str, *, exclude: Iterable[str] = ()) -> list[str]:
        """Who uses or builds on ``ident`` besides VM ``vm`` itself (its disks and snapshots,
        labelled ``vm`` and ``vm (...)``) and the images in ``exclude``."""
        labels = self.used_by(ident) + self.backing_of(ident, exclude=exclude)
        return sorted({label for label in labels if not owned_by(label, vm)})


def owned_by(label: str, vm: str) -> bool:
    """Whether an :class:`Index` label is VM ``vm`` itself: its disks (``vm``, ``vm (disk vda)``)
    or its snapshots (``vm (snapshot s1)``)."""
    return label == vm or label.startswith(f"{vm} (")


def _disk_identity(session, source, disk_type, pools_by_name):
    """The identity of a domain ``<disk>``'s ``<source>`` element."""
    if source is None:
        return None
    if disk_type == "volume" or (source.get("pool") and source.get("volume")):
        entry = pools_by_name.get(source.get("pool"))
        if entry is None:
            return ("path", f"{source.get('pool')}/{source.get('volume')}")
        with libvirt_caught():
            vol = entry["obj"].storageVolLookupByName(source.get("volume"))
            return _volume_identity(sxml.Pool(entry["xml"]).type, vol.path())
        target = sxml.Pool(entry["xml"]).target
        return (
            identity(os.path.join(target, source.get("volume")))
            if target
            else ("path", f"{source.get('pool')}/{source.get('volume')}")
        )
    if disk_type == "network" or source.get("protocol"):
        return network_identity(source.get("protocol"), source.get("name"))
    return identity(source_path(source))


def source_path(source: Any) -> Optional[str]:
    """The file or device a domain ``<disk>``'s ``<source>`` element names (None: neither)."""
    return None if source is None else (source.get("file") or source.get("dev"))


def _domain_xmls(dom):
    """The inactive definition and, for a running VM, the live one."""
    flags = [libvirt.VIR_DOMAIN_XML_INACTIVE]
    with libvirt_caught():
        if dom.isActive():
            flags.append(0)
    out = []
    for flag in flags:
        with libvirt_caught():
            out.append(parse(dom.XMLDesc(flag)))
    return out


def _add_domain_disks(session, index, root, label, pools_by_name):
    for disk in root.iter("disk"):
        source = disk.find("source")
        ident = _disk_identity(session, source, disk.get("type", "file"), pools_by_name)
        if ident is None:
            continue
        index.add_user(ident, label)
        path = source_path(source)
        # what libvirt recorded below it, and what the image itself says
        recorded = [
            source_path(b.find("source"))
            for b in disk.iter("backingStore")
            if b.find("source") is not None
        ]
        below = chain(path) if path and path.startswith("/") else []
        index.add_image(
            path or str(ident),
            f"{label} (disk {_target(disk)})",
            ident=ident,
            chain_of=[p for p in below + recorded if p],
        )


def _target(disk):
    node = disk.find("target")
    return node.get("dev") if node is not None else "?"


def scan(session: Any, pools: Optional[dict[str, Any]] = None) -> Index:
    """The :class:`Index` of this host: every VM (active and inactive), every VM
    snapshot, every volume of every running pool, every image file of every
    stopped file-backed pool. ``pools`` is :func:`salt_kvm.storage.pools`'s listing."""
    from salt_kvm import (
        storage,  # pylint: disable=import-outside-toplevel  # storage imports this module
        storage_volumes,  # pylint: disable=import-outside-toplevel
    )

    index = Index()
    pools = storage.pools(session) if pools is None else pools
    for pname, entry in pools.items():
        model = sxml.Pool(entry["xml"])
        if entry["active"]:
            with contextlib.suppress(
                Exception
            ):  # a pool that fails to list hides no VM; its volumes are unknown
                for vname, vol in storage_volumes.volumes(session, pname).items():
                    vmodel = sxml.Volume(vol["xml"])
                    ident = _volume_identity(model.type, vmodel.path)
                    recorded = [vmodel.backing_path] if vmodel.backing_path else []
                    below = (
                        chain(vmodel.path)
                        if model.type in storage_volumes.FILE_POOLS and vmodel.path
                        else []
                    )
                    index.add_image(
                        vmodel.path,
                        f"{pname}/{vname}",
                        ident=ident,
                        chain_of=below + [p for p in recorded if p not in below],
                    )
        elif model.type in FILE_POOLS and model.target and os.path.isdir(model.target):
            with contextlib.suppress(OSError):
                for fname in sorted(os.listdir(model.target)):
                    path = os.path.join(model.target, fname)
                    if os.path.isfile(path):
                        index.add_image(path, f"{pname}/{fname}")
    for dom in session.conn.listAllDomains(0):
        with libvirt_caught() as caught:
            name = dom.name()
        if caught:
            continue
        for root in _domain_xmls(dom):
            _add_domain_disks(session, index, root, name, pools)
        with libvirt_caught():
            for snap in dom.listAllSnapshots(0):
                with libvirt_caught():
                    root = parse(snap.getXMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
                    label = f"{name} (snapshot {snap.getName()})"
                    for domain in root.findall("domain"):
                        _add_domain_disks(session, index, domain, label, pools)
                    for disk in root.findall("disks/disk"):
                        path = source_path(disk.find("source"))
                        if path and disk.get("snapshot") == "external":
                            index.add_image(path, f"{label} overlay {path}")
    return index


def in_use(
    index: Index, ident: Any, *, exclude_images: Iterable[str] = (), owner: Optional[str] = None
) -> tuple[list[str], list[str]]:
    """The one rule of what keeps an image busy: ``(VMs that have it as a disk, images built
    on it)``. Images in ``exclude_images`` (the volume itself, its own pool, a VM's own chain)
    are no children; with ``owner``, VM ``owner`` itself (its disks and snapshots) is no user."""
    users = [u for u in index.used_by(ident) if not (owner and owned_by(u, owner))]
    return users, index.backing_of(ident, exclude=exclude_images)


def guard(
    index: Index,
    ident: Any,
    what: str,
    doing: str,
    force: bool,
    *,
    flag: str = "force: True",
    exclude_images: Iterable[str] = (),
) -> None:
    """Refuse ``doing`` to ``what`` (identity ``ident``) while a VM uses it or an image
    builds on it (:func:`in_use`)."""
    if force:
        return
    users, backs = in_use(index, ident, exclude_images=exclude_images)
    if users:
        raise Refused(
            f"{what} is used by VM {', '.join(users)}; {doing} it would lose its data "
            f"({flag} to do it anyway)"
        )
    if backs:
        raise Refused(
            f"{what} is the backing file of {', '.join(backs)}; {doing} it would break them "
            f"({flag} to do it anyway)"
        )
