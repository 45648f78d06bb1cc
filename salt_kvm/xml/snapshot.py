"""libvirt domain snapshot XML (``<domainsnapshot>``): one class parses and builds.

Parsing gives what ``snapshot_list`` reports (name, creation time, state,
parent, memory, the per-disk kind and overlay file, the domain as it was);
building gives the XML ``snapshotCreateXML`` takes (internal, external with or
without a memory file, disk-only) and the edited XML a ``REDEFINE`` takes when
a merge moved an image.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from lxml import etree

from salt_kvm.xml.base import Attr, Text, XmlModel
from salt_kvm.xml.domain import Disk, Domain

INTERNAL = "internal"
EXTERNAL = "external"
NO = "no"


class SnapshotDisk:
    """One ``<disks><disk>`` entry: ``name`` (target), ``snapshot`` kind, overlay file."""

    def __init__(self, element: Any) -> None:
        self.element = element

    @property
    def name(self) -> Optional[str]:
        return self.element.get("name")

    @property
    def snapshot(self) -> Optional[str]:
        return self.element.get("snapshot")

    @property
    def file(self) -> Optional[str]:
        source = self.element.find("source")
        if source is None:
            return None
        return source.get("file") or source.get("dev") or source.get("name")

    @property
    def format(self) -> Optional[str]:
        driver = self.element.find("driver")
        return driver.get("type") if driver is not None else None


class Snapshot(XmlModel):
    """``<domainsnapshot>``."""

    ROOT = "domainsnapshot"
    name = Text("name")
    description = Text("description")
    state = Text("state")
    created = Text("creationTime", int)
    parent = Text("parent/name")
    memory_snapshot = Attr("memory", "snapshot")
    memory_file = Attr("memory", "file")

    @property
    def disks(self) -> list[SnapshotDisk]:
        return [SnapshotDisk(node) for node in self.root.findall("disks/disk")]

    def add_disk(
        self, name: str, snapshot: str, *, file: Optional[str] = None, fmt: Optional[str] = None
    ) -> Any:
        """Add a ``<disks><disk>`` entry (an external one with its overlay file and format)."""
        disks = self.sub("disks")
        node = etree.SubElement(disks, "disk", name=name, snapshot=snapshot)
        if snapshot == EXTERNAL and (file or fmt):
            if fmt:
                etree.SubElement(node, "driver", type=fmt)
            if file:
                etree.SubElement(node, "source", file=file)
        return node

    @property
    def domain(self) -> Optional[Domain]:
        """The domain as it was when the snapshot was taken (a :class:`Domain`), or None."""
        node = self.root.find("domain")
        return Domain(node) if node is not None else None

    @property
    def inactive_domain(self) -> Optional[Domain]:
        """The inactive definition as it was (a :class:`Domain`), or None."""
        node = self.root.find("inactiveDomain")
        if node is None:
            return None
        copy = etree.fromstring(etree.tostring(node))
        copy.tag = "domain"
        return Domain(copy)

    @property
    def external_disks(self) -> list[SnapshotDisk]:
        return [d for d in self.disks if d.snapshot == EXTERNAL]

    @property
    def kind(self) -> str:
        """``external`` when any disk or the memory is external, else ``internal``."""
        if self.external_disks or self.memory_snapshot == EXTERNAL:
            return EXTERNAL
        return INTERNAL

    @property
    def has_memory(self) -> bool:
        return self.memory_snapshot in (INTERNAL, EXTERNAL)

    def set_domain_disk_image(self, target: str, path: str, fmt: str) -> bool:
        """In the recorded ``<domain>`` (and ``<inactiveDomain>``), point disk ``target`` at
        ``path``; True when a disk changed."""
        changed = False
        for tag in ("domain", "inactiveDomain"):
            node = self.root.find(tag)
            if node is None:
                continue
            for disk in node.findall("devices/disk"):
                tnode = disk.find("target")
                if tnode is not None and tnode.get("dev") == target:
                    Disk(disk).set_image(path, fmt)
                    changed = True
        return changed


def build(
    name: str,
    description: Optional[str] = None,
    *,
    memory: Optional[str] = None,
    memory_file: Optional[str] = None,
    disks: Optional[Iterable[tuple[Any, ...]]] = None,
) -> str:
    """The XML ``snapshotCreateXML`` takes.

    ``memory``: None (libvirt's default), ``'no'``, ``'internal'`` or ``'external'``
    (then ``memory_file`` is required). ``disks``: ``[(target, kind)]`` with
    kind ``internal``/``external``/``no``, or
    ``(target, kind, overlay_file, overlay_format)``.
    """
    snap = Snapshot()
    snap.name = name
    if description:
        snap.description = description
    if memory:
        snap.memory_snapshot = memory
        if memory == EXTERNAL:
            snap.memory_file = memory_file
    for disk in disks or ():
        file, fmt = (tuple(disk[2:]) + (None, None))[:2]
        snap.add_disk(disk[0], disk[1], file=file, fmt=fmt)
    return snap.to_xml()
