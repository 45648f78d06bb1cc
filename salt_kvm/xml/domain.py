"""libvirt domain XML: the parts other areas need (disks, guest agent, state).

A generic, read-mostly model: :class:`Domain` parses a VM's XML (live or
inactive) and exposes its disks as :class:`Disk` records with their backing
chain, and can repoint a disk at another image (used when snapshots are merged
by hand). Built with lxml through :mod:`salt_kvm.xml.base`.
"""

from __future__ import annotations

from typing import Any, Optional

from lxml import etree

from salt_kvm.xml.base import Attr, Text, XmlModel

GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def _source_path(source):
    """The file/device/volume a ``<source>`` element names (or ``None``)."""
    if source is None:
        return None
    for attr in ("file", "dev", "name", "volume"):
        if source.get(attr):
            if attr == "volume" and source.get("pool"):
                return f"{source.get('pool')}/{source.get('volume')}"
            return source.get(attr)
    return None


class Disk:
    """One ``<disk>`` element of a domain (a live view: setters edit the XML)."""

    def __init__(self, element: Any) -> None:
        self.element = element

    @property
    def target(self) -> Optional[str]:
        node = self.element.find("target")
        return node.get("dev") if node is not None else None

    @property
    def device(self) -> str:
        return self.element.get("device", "disk")

    @property
    def type(self) -> str:
        return self.element.get("type", "file")

    @property
    def format(self) -> Optional[str]:
        node = self.element.find("driver")
        return node.get("type") if node is not None else None

    @property
    def source(self) -> Optional[str]:
        return _source_path(self.element.find("source"))

    @property
    def readonly(self) -> bool:
        return self.element.find("readonly") is not None

    @property
    def snapshot(self) -> Optional[str]:
        """The disk's own ``snapshot=`` default (``internal``/``external``/``no``/None)."""
        return self.element.get("snapshot")

    @property
    def backing_chain(self) -> list[dict[str, Optional[str]]]:
        """``[{"file", "format"}, ...]`` below the source, top first (as libvirt reports it)."""
        chain: list[dict[str, Optional[str]]] = []
        node = self.element.find("backingStore")
        while node is not None and len(node):
            fmt = node.find("format")
            chain.append(
                {
                    "file": _source_path(node.find("source")),
                    "format": fmt.get("type") if fmt is not None else None,
                }
            )
            node = node.find("backingStore")
        return chain

    @property
    def is_snapshottable(self) -> bool:
        """A writable disk device (cdroms, floppies and read-only disks are never
        snapshotted)."""
        return self.device in ("disk", "lun") and not self.readonly and self.source is not None

    def set_image(self, path: str, fmt: str) -> None:
        """Point this disk at the image ``path`` of format ``fmt`` (a file) and drop the stale
        chain."""
        self.element.set("type", "file")
        source = self.element.find("source")
        if source is None:
            source = etree.SubElement(self.element, "source")
        for attr in list(source.attrib):
            del source.attrib[attr]
        source.set("file", path)
        driver = self.element.find("driver")
        if driver is None:
            driver = etree.Element("driver", name="qemu")
            self.element.insert(0, driver)
        driver.set("type", fmt)
        for node in self.element.findall("backingStore"):
            self.element.remove(node)

    def as_dict(self) -> dict[str, Any]:
        """The disk as plain data (what ``kvm`` functions return)."""
        return {
            "target": self.target,
            "device": self.device,
            "type": self.type,
            "format": self.format,
            "source": self.source,
            "readonly": self.readonly,
            "backing": self.backing_chain,
        }


class Domain(XmlModel):
    """``<domain>``: name, uuid, disks, guest agent channel."""

    ROOT = "domain"
    name = Text("name")
    uuid = Text("uuid")
    type = Attr(".", "type")

    @property
    def disks(self) -> list[Disk]:
        return [Disk(node) for node in self.root.findall("devices/disk")]

    def disk(self, target: str) -> Optional[Disk]:
        """The disk at ``target`` (``vda``), or None."""
        for disk in self.disks:
            if disk.target == target:
                return disk
        return None

    @property
    def guest_agent(self) -> Optional[str]:
        """``None`` (no channel), ``'connected'``, ``'disconnected'`` or ``'unknown'``."""
        for channel in self.root.findall("devices/channel"):
            target = channel.find("target")
            if target is not None and target.get("name") == GUEST_AGENT_CHANNEL:
                return target.get("state") or "unknown"
        return None
