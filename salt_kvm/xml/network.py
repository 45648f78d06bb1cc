"""libvirt network XML: one class parses what libvirt reports and builds what is declared.

:class:`Network` maps the pillar keys of a network (``mode``, ``bridge``,
``dev``, ``address``, ``address6``, ``dhcp``, ``dhcp6``, ``domain``, ``mtu``)
to the network XML::

    net = Network(libvirt_xml)
    net.spec()                    # -> {"mode": "nat", "bridge": "virbr0", ...}
    net.apply_spec({"mode": "bridge", "bridge": "br0"})   # edit in place
    Network.build("lan", {"mode": "nat", "address": "198.51.100.1/24"}).to_xml()

Editing in place keeps whatever the declaration does not mention (the UUID,
the MAC, a bridge name libvirt chose, DNS entries added by hand) and removes
what a new mode cannot have (a NAT network turned into a bridge network loses
its addresses, DHCP, DNS domain, MAC, MTU and STP settings, which libvirt
would refuse), so the XML stays valid across mode switches.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Optional

from lxml import etree

from salt_kvm import network_modes
from salt_kvm.xml.base import Attr, Text, XmlModel, parse

#: pillar mode -> libvirt ``<forward mode>`` (``isolated`` has no ``<forward>``)
#: (the rows of :mod:`salt_kvm.network_modes`)
FORWARD_MODES = network_modes.FORWARD
#: modes in which libvirt runs its own bridge, addresses and dnsmasq
MANAGED_MODES = network_modes.MANAGED


def _remove(node):
    if node is not None and node.getparent() is not None:
        node.getparent().remove(node)


def _norm_mac(mac):
    return mac.lower() if mac else mac


def _norm_ip(value):
    return str(ipaddress.ip_address(value)) if value else None


def host_key(host: dict[str, Any]) -> tuple[Any, str, str]:
    """Sort key of a DHCP host dict (by address)."""
    return (ipaddress.ip_address(host["ip"]), host.get("mac") or "", host.get("name") or "")


def norm_hosts(hosts: Optional[Iterable[dict[str, Any]]]) -> list[dict[str, str]]:
    """DHCP hosts as sorted dicts with only the keys that are set (mac lower case)."""
    out = []
    for host in hosts or []:
        item = {"ip": str(ipaddress.ip_address(host["ip"]))}
        if host.get("mac"):
            item["mac"] = _norm_mac(host["mac"])
        if host.get("name"):
            item["name"] = host["name"]
        out.append(item)
    return sorted(out, key=host_key)


class IP(XmlModel):
    """One ``<ip>`` element of a network (IPv4 or IPv6, with its DHCP)."""

    ROOT = "ip"
    address = Attr(".", "address")
    netmask = Attr(".", "netmask")
    prefix = Attr(".", "prefix", conv=int)
    family = Attr(".", "family")
    range_start = Attr("dhcp/range", "start")
    range_end = Attr("dhcp/range", "end")

    @property
    def version(self) -> int:
        if self.family == "ipv6":
            return 6
        if self.family == "ipv4":
            return 4
        return ipaddress.ip_address(self.address).version if self.address else 4

    @property
    def interface(self) -> Optional[str]:
        """``198.51.100.1/24`` (from prefix or netmask), or None."""
        if not self.address:
            return None
        if self.prefix is not None:
            plen = self.prefix
        elif self.netmask:
            plen = ipaddress.ip_network(f"0.0.0.0/{self.netmask}").prefixlen
        else:
            plen = 24 if self.version == 4 else 64
        return str(ipaddress.ip_interface(f"{self.address}/{plen}"))

    @interface.setter
    def interface(self, value: str) -> None:
        iface = ipaddress.ip_interface(value)
        self.address = str(iface.ip)
        self.netmask = None
        self.prefix = iface.network.prefixlen
        self.family = "ipv6" if iface.version == 6 else None

    @property
    def hosts(self) -> list[dict[str, str]]:
        return norm_hosts(
            {"ip": h.get("ip"), "mac": h.get("mac"), "name": h.get("name")}
            for h in self.findall("dhcp/host")
            if h.get("ip")
        )

    def host_elements(self) -> Any:
        """``{normalised host as a tuple: element}`` of every static DHCP host."""
        out = {}
        for node in self.findall("dhcp/host"):
            if node.get("ip"):
                host = norm_hosts(
                    [{"ip": node.get("ip"), "mac": node.get("mac"), "name": node.get("name")}]
                )[0]
                out[host_tuple(host)] = node
        return out

    def dhcp(self) -> Optional[dict[str, Any]]:
        """``{start, end, hosts}`` or None when this address serves no DHCP."""
        if self.find("dhcp") is None:
            return None
        return {"start": self.range_start, "end": self.range_end, "hosts": self.hosts}

    def set_dhcp(self, dhcp: Optional[dict[str, Any]]) -> None:
        """Set the range (when given) and exactly the declared hosts."""
        if dhcp is None:
            return
        node = self.sub("dhcp")
        same = (_norm_ip(self.range_start), _norm_ip(self.range_end)) == (
            _norm_ip(dhcp.get("start")),
            _norm_ip(dhcp.get("end")),
        )
        if dhcp.get("start") and dhcp.get("end") and not same:
            rng = node.find("range")
            if rng is None:
                rng = etree.Element("range")
                node.insert(0, rng)
            # a range element may carry a lease time; keep it, replace the bounds
            rng.set("start", str(ipaddress.ip_address(dhcp["start"])))
            rng.set("end", str(ipaddress.ip_address(dhcp["end"])))
            for extra in node.findall("range")[1:]:
                _remove(extra)
        if "hosts" in dhcp and self.hosts != norm_hosts(dhcp.get("hosts")):
            for old in node.findall("host"):
                _remove(old)
            for host in norm_hosts(dhcp.get("hosts")):
                node.append(host_element(host))


def host_tuple(host: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(ip, mac, name)`` of a DHCP host dict."""
    return (host["ip"], host.get("mac"), host.get("name"))


def host_element(host: dict[str, Any]) -> Any:
    """``<host mac=... name=... ip=.../>`` for a DHCP host dict."""
    node = etree.Element("host")
    if host.get("mac"):
        node.set("mac", _norm_mac(host["mac"]))
    if host.get("name"):
        node.set("name", host["name"])
    node.set("ip", str(ipaddress.ip_address(host["ip"])))
    return node


def range_xml(rng: dict[str, Any]) -> str:
    """``<range start=... end=.../>`` for a ``{start, end}`` mapping."""
    node = etree.Element("range")
    node.set("start", _norm_ip(rng["start"]))
    node.set("end", _norm_ip(rng["end"]))
    return etree.tostring(node, encoding="unicode")


def host_xml(host: dict[str, Any]) -> str:
    return etree.tostring(host_element(host), encoding="unicode")


class Network(XmlModel):
    """A libvirt ``<network>``."""

    ROOT = "network"
    name = Text("name")
    uuid = Text("uuid")
    forward_mode = Attr("forward", "mode")
    forward_dev = Attr("forward", "dev")
    bridge = Attr("bridge", "name")
    mtu = Attr("mtu", "size", conv=int)
    domain = Attr("domain", "name")
    mac = Attr("mac", "address")

    # --- reading -----------------------------------------------------------

    @property
    def mode(self) -> str:
        """Pillar mode: nat, route, open, bridge, isolated (or libvirt's own, e.g. passthrough)."""
        if self.find("forward") is None:
            return "isolated"
        return self.forward_mode or "nat"  # libvirt's default forward mode is nat

    def ips(self) -> list[IP]:
        return [IP(node) for node in self.findall("ip")]

    def ip(self, version: int) -> Optional[IP]:
        """The first ``<ip>`` of that IP version, or None."""
        for item in self.ips():
            if item.version == version:
                return item
        return None

    def ip_index(self, version: int) -> int:
        """Index of :meth:`ip` among all ``<ip>`` elements (libvirt's ``parentIndex``)."""
        for index, item in enumerate(self.ips()):
            if item.version == version:
                return index
        return -1

    def spec(self) -> dict[str, Any]:
        """The network as pillar keys (only those that are set)."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.bridge:
            out["bridge"] = self.bridge
        if self.forward_dev:
            out["dev"] = self.forward_dev
        for version, akey, dkey in ((4, "address", "dhcp"), (6, "address6", "dhcp6")):
            item = self.ip(version)
            if item is None:
                continue
            if item.interface:
                out[akey] = item.interface
            dhcp = item.dhcp()
            if dhcp is not None:
                out[dkey] = dhcp
        if self.domain:
            out["domain"] = self.domain
        if self.mtu:
            out["mtu"] = self.mtu
        return out

    # --- building ----------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """Switch the forward mode, dropping what the new mode cannot have."""
        old = self.mode
        forward = FORWARD_MODES[mode]
        if forward is None:
            _remove(self.find("forward"))
        elif self.find("forward") is None:
            node = etree.Element("forward", mode=forward)
            self._insert_after(node, ("uuid", "name"))
        elif self.forward_mode != forward:
            node = self.find("forward")
            # sub-elements (<nat>, <interface>, <pf>) belong to the old mode
            for child in list(node):
                node.remove(child)
            node.set("mode", forward)
        if mode in ("isolated", "open", "bridge"):
            self.forward_dev = None
        if mode == "bridge":
            for path in ("ip", "dns", "domain", "mac", "mtu", "route"):
                for node in self.findall(path):
                    _remove(node)
            bridge = self.find("bridge")
            if bridge is not None:
                for attr in list(bridge.attrib):
                    if attr != "name":
                        del bridge.attrib[attr]
        elif old == "bridge" and mode != "bridge":
            # the host bridge belongs to the host: libvirt picks its own unless declared
            _remove(self.find("bridge"))

    def _insert_after(self, node, tags):
        for tag in tags:
            found = self.find(tag)
            if found is not None:
                found.addnext(node)
                return
        self.root.insert(0, node)

    def set_ip(
        self, version: int, interface: Optional[str], *, dhcp: Optional[dict[str, Any]] = None
    ) -> None:
        item = self.ip(version)
        if item is None:
            if interface is None:
                if dhcp is None:
                    return
                raise ValueError(f"DHCP needs an IPv{version} address")
            node = etree.SubElement(self.root, "ip")
            item = IP(node)
        if interface is not None and item.interface != str(ipaddress.ip_interface(interface)):
            item.interface = interface
        item.set_dhcp(dhcp)

    def apply_spec(self, spec: dict[str, Any]) -> Network:
        """Edit this network to match the declared keys of ``spec`` (others are kept)."""
        mode = spec.get("mode", "nat")
        self.set_mode(mode)
        if spec.get("bridge"):
            self.bridge = spec["bridge"]
        if spec.get("dev") and mode in ("nat", "route"):
            self.forward_dev = spec["dev"]
        if mode == "bridge":
            return self
        self.set_ip(4, spec.get("address"), dhcp=spec.get("dhcp"))
        self.set_ip(6, spec.get("address6"), dhcp=spec.get("dhcp6"))
        if spec.get("domain"):
            self.domain = spec["domain"]
        if spec.get("mtu"):
            self.mtu = spec["mtu"]
        return self

    @classmethod
    def build(cls, name: str, spec: dict[str, Any], *, base: Optional[str] = None) -> Network:
        """The XML for ``spec``: ``base`` (current XML) edited in place, or a new network."""
        net = cls(base) if base is not None else cls()
        if base is None:
            net.name = name
        return net.apply_spec(spec)


def domain_interfaces(xml: str) -> list[dict[str, Any]]:
    """The network interfaces of a domain XML: ``[{type, network, bridge, dev, tap, mac}]``."""
    return interfaces_of(parse(xml))


def interfaces_of(root: Any) -> list[dict[str, Any]]:
    """:func:`domain_interfaces` of an already parsed domain XML."""
    out = []
    for iface in root.findall("devices/interface"):
        source = iface.find("source")
        target = iface.find("target")
        mac = iface.find("mac")
        out.append(
            {
                "type": iface.get("type"),
                "network": source.get("network") if source is not None else None,
                "bridge": source.get("bridge") if source is not None else None,
                "dev": source.get("dev") if source is not None else None,
                "tap": target.get("dev") if target is not None else None,
                "mac": _norm_mac(mac.get("address")) if mac is not None else None,
            }
        )
    return out
