"""libvirt storage XML: pools, volumes and the secrets pools authenticate with.

One class per document both parses (what libvirt reports) and builds (what is
declared). The pool's source is exchanged as the same dict the pillar uses
(``devices``, ``dir``, ``name``, ``hosts``, ``format``, ``initiator``,
``auth``), so the current and the declared pool compare key by key. A secret's
value never enters XML: pools reference the libvirt secret by its usage name.
"""

from __future__ import annotations

from typing import Any, Optional

from lxml import etree

from salt_kvm.xml.base import Attr, Text, XmlModel

#: the usage name of the libvirt secret salt-kvm keeps for pool ``name``
SECRET_USAGE_PREFIX = "salt-kvm/"


def secret_usage(pool_name: str) -> str:
    """The usage name of the libvirt secret salt-kvm keeps for pool ``pool_name``."""
    return SECRET_USAGE_PREFIX + pool_name


def _host_text(host):
    name, port = host.get("name"), host.get("port")
    if name and ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{name}:{port}" if port else name


def _split_host(text):
    """``'h'``, ``'h:3260'``, ``'[2001:db8::1]:3260'`` -> ``(name, port)``."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None


#: the pillar's source keys, in libvirt's own element order, and their elements
SOURCE_KEYS = ("hosts", "devices", "dir", "auth", "name", "format", "initiator")
SOURCE_TAGS = {
    "hosts": "host",
    "devices": "device",
    "dir": "dir",
    "auth": "auth",
    "name": "name",
    "format": "format",
    "initiator": "initiator",
}


def _source_elements(key, value):
    """The ``<source>`` children that hold pillar source key ``key``."""
    if key == "hosts":
        out = []
        for host in value:
            name, port = _split_host(host)
            el = etree.Element("host", name=name)
            if port:
                el.set("port", str(port))
            out.append(el)
        return out
    if key == "devices":
        return [etree.Element("device", path=dev) for dev in value]
    if key == "dir":
        return [etree.Element("dir", path=value)]
    if key == "auth":
        el = etree.Element("auth", type=value["type"], username=value["username"])
        secret = etree.SubElement(el, "secret")
        if value.get("secret_uuid"):
            secret.set("uuid", value["secret_uuid"])
        else:
            secret.set("usage", value["secret_usage"])
        return [el]
    if key == "name":
        el = etree.Element("name")
        el.text = value
        return [el]
    if key == "format":
        return [etree.Element("format", type=value)]
    init = etree.Element("initiator")
    etree.SubElement(init, "iqn", name=value)
    return [init]


class Pool(XmlModel):
    """``<pool>``: name, type, target path, source, sizes."""

    ROOT = "pool"
    name = Text("name")
    uuid = Text("uuid")
    type = Attr(".", "type")
    target = Text("target/path")
    capacity = Text("capacity", int)
    allocation = Text("allocation", int)
    available = Text("available", int)

    @property
    def source(self) -> dict[str, Any]:
        """The source as the pillar writes it (only keys that are present)."""
        src = self.root.find("source")
        out: dict[str, Any] = {}
        if src is None:
            return out
        devices = [d.get("path") for d in src.findall("device") if d.get("path")]
        if devices:
            out["devices"] = devices
        node = src.find("dir")
        if node is not None and node.get("path"):
            out["dir"] = node.get("path")
        node = src.find("name")
        if node is not None and node.text:
            out["name"] = node.text.strip()
        hosts = []
        for host in src.findall("host"):
            if host.get("name"):
                hosts.append(_host_text({"name": host.get("name"), "port": host.get("port")}))
        if hosts:
            out["hosts"] = hosts
        node = src.find("format")
        if node is not None and node.get("type"):
            out["format"] = node.get("type")
        node = src.find("initiator/iqn")
        if node is not None and node.get("name"):
            out["initiator"] = node.get("name")
        auth = src.find("auth")
        if auth is not None:
            entry = {"type": auth.get("type"), "username": auth.get("username")}
            secret = auth.find("secret")
            if secret is not None:
                if secret.get("usage"):
                    entry["secret_usage"] = secret.get("usage")
                if secret.get("uuid"):
                    entry["secret_uuid"] = secret.get("uuid")
            out["auth"] = entry
        return out

    @source.setter
    def source(self, spec: Optional[dict[str, Any]]) -> None:
        """Replace ``<source>`` with one built from a pillar source dict.

        ``auth`` is written with a reference to its libvirt secret
        (``secret_uuid`` or ``secret_usage``), never with the secret itself.
        """
        old = self.root.find("source")
        src = etree.Element("source")
        given = spec or {}
        for key in SOURCE_KEYS:
            if given.get(key):
                for element in _source_elements(key, given[key]):
                    src.append(element)
        if old is not None:
            old.addprevious(src)
            old.getparent().remove(old)
        else:
            target = self.root.find("target")
            if target is not None:
                target.addprevious(src)
            else:
                self.root.append(src)

    def edit_source(self, spec: Optional[dict[str, Any]]) -> None:
        """Change only the declared keys of ``<source>`` in place: what salt-kvm does not
        model (``<protocol ver>``, ``<adapter>``, ``<config>``, vendor and product, mount
        options) stays as it is."""
        src = self.root.find("source")
        if src is None:
            self.source = spec
            return
        for key, value in (spec or {}).items():
            if key not in SOURCE_KEYS:
                continue
            old = src.findall(SOURCE_TAGS[key])
            anchor = old[0] if old else None
            for element in _source_elements(key, value) if value else []:
                if anchor is not None:
                    anchor.addprevious(element)
                else:
                    src.append(element)
            for element in old:
                src.remove(element)

    def edit(self, target: Optional[str] = None, source: Optional[dict[str, Any]] = None) -> Pool:
        """The definition with the declared target path and source keys changed in
        place; everything else (``<permissions>``, a source's ``<protocol>``...) kept.
        The sizes libvirt reports are dropped (they are not part of a definition)."""
        for tag in ("capacity", "allocation", "available"):
            node = self.root.find(tag)
            if node is not None:
                self.root.remove(node)
        if target:
            self.target = target
        if source:
            self.edit_source(source)
        return self

    @classmethod
    def build(
        cls,
        name: str,
        ptype: str,
        *,
        target: Optional[str] = None,
        source: Optional[dict[str, Any]] = None,
        uuid: Optional[str] = None,
    ) -> Pool:
        """The XML of a declared pool (elements in libvirt's own order)."""
        pool = cls()
        pool.type = ptype
        pool.name = name
        if uuid:
            pool.uuid = uuid
        if source:
            pool.source = source
        if target:
            pool.target = target
        return pool


class Volume(XmlModel):
    """``<volume>``: name, capacity, allocation, format, path, backing store."""

    ROOT = "volume"
    name = Text("name")
    key = Text("key")
    type = Attr(".", "type")
    capacity = Text("capacity", int)
    allocation = Text("allocation", int)
    physical = Text("physical", int)
    path = Text("target/path")
    format = Attr("target/format", "type")
    backing_path = Text("backingStore/path")
    backing_format = Attr("backingStore/format", "type")

    def set_sizes(self, capacity: int, allocation: Optional[int] = None) -> None:
        """Set ``<capacity>`` (and ``<allocation>``) in bytes."""
        cap = self.sub("capacity")
        cap.set("unit", "bytes")
        cap.text = str(int(capacity))
        if allocation is not None:
            alloc = self.sub("allocation")
            alloc.set("unit", "bytes")
            alloc.text = str(int(allocation))

    @classmethod
    def build(
        cls,
        name: str,
        capacity: int,
        *,
        fmt: Optional[str] = None,
        allocation: Optional[int] = None,
        backing_path: Optional[str] = None,
        backing_format: Optional[str] = None,
    ) -> Volume:
        """The XML of a declared volume."""
        vol = cls()
        vol.name = name
        vol.set_sizes(capacity, allocation)
        if fmt:
            vol.format = fmt
        if backing_path:
            vol.backing_path = backing_path
            if backing_format:
                vol.backing_format = backing_format
        return vol


class Secret(XmlModel):
    """``<secret>`` for a pool's CHAP password or Ceph key (the value is set apart)."""

    ROOT = "secret"
    uuid = Text("uuid")
    description = Text("description")
    usage_type = Attr("usage", "type")

    @property
    def usage(self) -> Optional[str]:
        """What the secret is for (an iSCSI target or a Ceph name), or None."""
        node = self.root.find("usage")
        if node is None:
            return None
        for tag in ("target", "name", "volume"):
            child = node.find(tag)
            if child is not None and child.text:
                return child.text.strip()
        return None

    @classmethod
    def build(
        cls,
        usage: str,
        usage_type: str,
        *,
        description: Optional[str] = None,
        uuid: Optional[str] = None,
    ) -> Secret:
        """``usage_type`` ``iscsi`` (CHAP) or ``ceph``; private, persistent."""
        secret = cls()
        secret.root.set("ephemeral", "no")
        secret.root.set("private", "yes")
        if uuid:
            secret.uuid = uuid
        if description:
            secret.description = description
        node = secret.sub("usage")
        node.set("type", usage_type)
        etree.SubElement(node, "target" if usage_type == "iscsi" else "name").text = usage
        return secret
