"""libvirt networks: NAT, routed, isolated, open and bridged, declared per host.

Execution functions (:func:`network_list`, :func:`network_show`,
:func:`network_define`, :func:`network_start`, :func:`network_stop`,
:func:`network_undefine`, :func:`network_autostart`, :func:`network_leases`) and
the states :func:`network_present` / :func:`network_absent`. Every function
takes the run's :class:`~salt_kvm.conn.Session` first; nothing here touches Salt.

How :func:`network_present` applies a change:

* static DHCP hosts (``dhcp:hosts``, ``dhcp6:hosts``) of a running network are
  added and removed live with ``virNetworkUpdate`` (live and persistent), and so
  is a new DHCP range when the network already has one; the network keeps running;
* ``autostart`` is switched directly;
* every other key (mode, bridge, dev, addresses, a first DHCP range, domain, MTU) is
  written to the persistent definition and, when the network is running, needs
  a restart of the network. The restart happens only outside test mode and,
  when running VMs are attached, only with ``restart: True`` (the state fails
  naming the VMs otherwise). After a restart, the taps of the attached VMs are
  put back on the network's bridge.

The bridge name libvirt picks itself (``virbrN``) is never reported as drift
when no ``bridge`` is declared; undeclared keys are left as they are.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from typing import Any, Optional

from salt_kvm import conn as _conn
from salt_kvm import network_modes, plan, schema
from salt_kvm.conn import libvirt_errors
from salt_kvm.errors import InvalidInput, KvmError, NotFound, Refused
from salt_kvm.plan import Changes, Plan, Undo
from salt_kvm.xml import network as netxml
from salt_kvm.xml.base import xml_diff

log = logging.getLogger(__name__)

#: session.memo keys (invalidated with the prefix ``network:`` after every write)
MEMO_NETWORKS = _conn.memo_key("network", "list")
MEMO_DOMAINS = _conn.memo_key("network", "domains")

#: pillar keys of a network state that are not part of the network itself
STATE_ONLY_KEYS = ("restart", "force", "absent")
#: flattened keys whose change needs the network to restart to take effect
RESTART_KEYS = (
    "mode",
    "bridge",
    "dev",
    "address",
    "address6",
    "dhcp:start",
    "dhcp:end",
    "dhcp6:start",
    "dhcp6:end",
    "domain",
    "mtu",
)
#: flattened keys applied live with virNetworkUpdate: static hosts always, the range when
#: the running network already has one (a first range needs a restart)
LIVE_HOST_KEYS = {"dhcp:hosts": (4, "dhcp"), "dhcp6:hosts": (6, "dhcp6")}
LIVE_RANGE_KEYS = {"dhcp": 4, "dhcp6": 6}

SYS_NET = "/sys/class/net"


def _lv() -> Any:
    return _conn.libvirt


def _msg(exc: Any) -> str:
    return _conn.libvirt_message(exc)


# --- listings ----------------------------------------------------------------


def _load_networks(session):
    lv = _lv()
    out = {}
    with libvirt_errors("cannot list libvirt networks"):
        nets = session.conn.listAllNetworks(0)
    for net in nets:
        try:
            name = net.name()
            active = bool(net.isActive())
            persistent = bool(net.isPersistent())
            live = net.XMLDesc(0)
            config = net.XMLDesc(lv.VIR_NETWORK_XML_INACTIVE) if active and persistent else live
            autostart = bool(net.autostart()) if persistent else False
        except lv.libvirtError:  # raw: it went away while we listed (another run); skip it
            continue
        out[name] = {
            "name": name,
            "active": active,
            "persistent": persistent,
            "autostart": autostart,
            "xml": live,
            "config": config,
        }
    return out


def networks(session: Any) -> dict[str, dict[str, Any]]:
    """``{name: {name, active, persistent, autostart, xml, config}}`` (one listing per run)."""
    return session.memo(MEMO_NETWORKS, lambda: _load_networks(session))


def _load_domains(session):
    lv = _lv()
    out = []
    with libvirt_errors("cannot list VMs"):
        doms = session.conn.listAllDomains(0)
    for dom in doms:
        try:
            out.append(
                {
                    "name": dom.name(),
                    "active": bool(dom.isActive()),
                    "interfaces": netxml.domain_interfaces(dom.XMLDesc(0)),
                }
            )
        except lv.libvirtError:  # raw: it went away while we listed (another run); skip it
            continue
    return out


def domains(session: Any) -> list[dict[str, Any]]:
    """``[{name, active, interfaces}]`` of every VM (one listing per run)."""
    return session.memo(MEMO_DOMAINS, lambda: _load_domains(session))


def _record(session, name):
    rec = networks(session).get(name)
    if rec is None:
        raise NotFound(f"libvirt network '{name}' does not exist on {session.uri}")
    return rec


def _lookup(session, name):
    lv = _lv()
    try:
        return session.conn.networkLookupByName(name)
    except lv.libvirtError as exc:  # raw: "no such network" becomes NotFound
        if exc.get_error_code() == lv.VIR_ERR_NO_NETWORK:
            raise NotFound(f"libvirt network '{name}' does not exist on {session.uri}") from None
        raise KvmError(f"network '{name}': {_msg(exc)}") from None


def _bridge_ports(bridge):
    try:
        return sorted(os.listdir(os.path.join(SYS_NET, bridge, "brif")))
    except OSError:
        return []


def _is_bridge(name):
    return os.path.isdir(os.path.join(SYS_NET, name, "bridge"))


def _link_exists(name):
    return os.path.exists(os.path.join(SYS_NET, name))


def vm_interfaces(session: Any, name: str, *, xml: Optional[str] = None) -> list[dict[str, Any]]:
    """Interfaces of VMs on network ``name``: ``[{vm, running, mac, tap}]``.

    Found from domain XML (interfaces of type network with that source) and
    from the taps on the network's bridge (VMs plugged into it directly).
    """
    if xml is None:
        xml = _record(session, name)["xml"]
    net = netxml.Network(xml)
    bridge = net.bridge if net.mode in netxml.MANAGED_MODES else None
    ports = set(_bridge_ports(bridge)) if bridge else set()
    out = []
    for dom in domains(session):
        for iface in dom["interfaces"]:
            on_it = iface["type"] == "network" and iface["network"] == name
            if not on_it and bridge:
                on_it = (iface["type"] == "bridge" and iface["bridge"] == bridge) or (
                    dom["active"] and iface["tap"] in ports
                )
            if on_it:
                out.append(
                    {
                        "vm": dom["name"],
                        "running": dom["active"],
                        "mac": iface["mac"],
                        "tap": iface["tap"] if dom["active"] else None,
                    }
                )
    return sorted(out, key=lambda i: (i["vm"], i["mac"] or ""))


def attached_vms(session: Any, name: str, *, xml: Optional[str] = None) -> list[str]:
    """Names of the running VMs attached to network ``name`` (they lose their link on a
    restart)."""
    return sorted({i["vm"] for i in vm_interfaces(session, name, xml=xml) if i["running"]})


# --- execution functions --------------------------------------------------------


def network_list(session: Any) -> dict[str, dict[str, Any]]:
    """``{name: {mode, bridge, active, autostart, persistent}}``."""
    out = {}
    for name, rec in sorted(networks(session).items()):
        net = netxml.Network(rec["xml"])
        out[name] = {
            "mode": net.mode,
            "bridge": net.bridge,
            "active": rec["active"],
            "autostart": rec["autostart"],
            "persistent": rec["persistent"],
        }
    return out


def network_show(session: Any, name: str) -> dict[str, Any]:
    """Everything about one network: pillar keys, state, and the VMs attached."""
    schema.validate(schema.OBJNAME, name, "name")
    rec = _record(session, name)
    net = netxml.Network(rec["xml"])
    out = {"name": name, "uuid": net.uuid}
    out.update(
        {
            k: None
            for k in ("bridge", "dev", "address", "address6", "dhcp", "dhcp6", "domain", "mtu")
        }
    )
    out.update(net.spec())
    out.update(
        {
            "active": rec["active"],
            "autostart": rec["autostart"],
            "persistent": rec["persistent"],
            "bridge_ports": _bridge_ports(net.bridge) if net.bridge and rec["active"] else [],
            "interfaces": vm_interfaces(session, name, xml=rec["xml"]),
        }
    )
    out["vms"] = sorted({i["vm"] for i in out["interfaces"]})
    out["attached"] = attached_vms(session, name, xml=rec["xml"])
    if rec["config"] != rec["xml"] and rec["active"]:
        pending = _flat(netxml.Network(rec["config"]).spec())
        now = _flat(net.spec())
        out["pending_restart"] = sorted(
            k for k in set(pending) | set(now) if k in RESTART_KEYS and pending.get(k) != now.get(k)
        )
    else:
        out["pending_restart"] = []
    return out


def _validated(name, kwargs):
    spec = schema.validate_args(schema.NETWORK, name, kwargs, name_field=schema.OBJNAME)
    return plan.declared(spec, state_only=STATE_ONLY_KEYS)


def network_define(session: Any, name: str, **kwargs: Any) -> dict[str, Any]:
    """Define network ``name`` (or update its persistent definition); it is not started."""
    spec = _validated(name, kwargs)
    autostart = spec.pop("autostart", None)
    rec = networks(session).get(name)
    base = rec["config"] if rec else None
    _check_host(session, name, spec, rec, test=False)
    xml = netxml.Network.build(name, spec, base=base).to_xml()
    try:
        with libvirt_errors(f"cannot define network '{name}'"):
            net = session.conn.networkDefineXML(xml)
            if autostart is not None:
                net.setAutostart(1 if autostart else 0)
    finally:
        session.invalidate("network:")
    return network_show(session, name)


def network_start(session: Any, name: str) -> bool:
    """Start network ``name``; returns True (also when it was running)."""
    schema.validate(schema.OBJNAME, name, "name")
    net = _lookup(session, name)
    try:
        with libvirt_errors(f"cannot start network '{name}'"):
            if not net.isActive():
                net.create()
    finally:
        session.invalidate("network:")
    return True


def _guard_vms(session, name, force, action):
    vms = attached_vms(session, name)
    if vms and not force:
        raise Refused(
            f"network '{name}' has running VMs attached ({', '.join(vms)}); {action} would "
            "cut their link (force: True to do it anyway)"
        )


def network_stop(session: Any, name: str, *, force: bool = False) -> bool:
    """Stop (destroy) network ``name``; refuses with running VMs attached unless ``force``."""
    schema.validate(schema.OBJNAME, name, "name")
    net = _lookup(session, name)
    if not net.isActive():
        return True
    _guard_vms(session, name, force, "stopping it")
    try:
        with libvirt_errors(f"cannot stop network '{name}'"):
            net.destroy()
    finally:
        session.invalidate("network:")
    return True


def _remove(session, name):
    net = _lookup(session, name)
    try:
        with libvirt_errors(f"cannot remove network '{name}'"):
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
    finally:
        session.invalidate("network:")


def network_undefine(session: Any, name: str, *, force: bool = False) -> bool:
    """Stop (if running) and undefine network ``name``; refuses with running VMs attached
    unless ``force``."""
    schema.validate(schema.OBJNAME, name, "name")
    _record(session, name)
    _guard_vms(session, name, force, "removing it")
    _remove(session, name)
    return True


def network_autostart(session: Any, name: str, *, enabled: bool = True) -> bool:
    """Start network ``name`` at boot (or not)."""
    schema.validate(schema.OBJNAME, name, "name")
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled", f"{enabled!r} is not true or false")
    net = _lookup(session, name)
    try:
        with libvirt_errors(f"cannot set autostart of network '{name}'"):
            net.setAutostart(1 if enabled else 0)
    finally:
        session.invalidate("network:")
    return enabled


def network_leases(session: Any, name: str) -> list[dict[str, Any]]:
    """The DHCP leases dnsmasq handed out on network ``name``."""
    schema.validate(schema.OBJNAME, name, "name")
    net = _lookup(session, name)
    lv = _lv()
    with libvirt_errors(f"cannot read the leases of network '{name}'"):
        raw = net.DHCPLeases() if net.isActive() else []
    out = []
    for lease in raw or []:
        out.append(
            {
                "mac": (lease.get("mac") or "").lower() or None,
                "ip": lease.get("ipaddr"),
                "prefix": lease.get("prefix"),
                "type": "ipv6"
                if lease.get("type") == getattr(lv, "VIR_IP_ADDR_TYPE_IPV6", 1)
                else "ipv4",
                "hostname": lease.get("hostname"),
                "clientid": lease.get("clientid"),
                "expiry": lease.get("expirytime"),
                "interface": lease.get("iface"),
            }
        )
    return sorted(out, key=lambda lease: (lease["type"], lease["ip"] or ""))


# --- the states ------------------------------------------------------------------


def _flat(spec, declared=False):
    """Pillar keys -> comparable flat keys (``dhcp`` becomes ``dhcp:start``, ``dhcp:end``,
    ``dhcp:hosts``)."""
    out = {}
    for key, value in spec.items():
        if key in ("dhcp", "dhcp6"):
            if value is None:
                continue
            for sub in ("start", "end"):
                if value.get(sub) is not None or not declared:
                    out[f"{key}:{sub}"] = (
                        str(ipaddress.ip_address(value[sub])) if value.get(sub) else None
                    )
            if "hosts" in value or not declared:
                out[f"{key}:hosts"] = netxml.norm_hosts(value.get("hosts"))
        else:
            out[key] = value
    return out


def _host_routes(path="/proc/net/route"):
    """``[(interface, IPv4Network)]`` of the host's routes (what libvirt checks before
    starting a network)."""
    out = []
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            if int(mask) == 0:
                continue
            out.append((fields[0], ipaddress.ip_network(f"{dest}/{mask}", strict=False)))
        except ValueError:
            continue
    return out


def _host_routes6(path="/proc/net/ipv6_route"):
    """``[(interface, IPv6Network)]`` of the host's IPv6 routes (default and host routes
    left out)."""
    out = []
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            plen = int(fields[1], 16)
            if plen in (0, 128):
                continue
            dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            out.append((fields[9], ipaddress.ip_network(f"{dest}/{plen}", strict=False)))
        except ValueError:
            continue
    return out


def _check_host(session, name, spec, rec, test):
    """Cross-checks against the host: subnets of other networks, bridge names."""
    mode = spec.get("mode", "nat")
    others = {n: r for n, r in networks(session).items() if n != name}
    for key, version in (("address", 4), ("address6", 6)):
        if not spec.get(key):
            continue
        mine = ipaddress.ip_interface(spec[key]).network
        for other, orec in sorted(others.items()):
            oip = netxml.Network(orec["config"]).ip(version)
            if (
                oip is not None
                and oip.interface
                and mine.overlaps(ipaddress.ip_interface(oip.interface).network)
            ):
                raise InvalidInput(
                    f"{name}:{key}",
                    f"{mine} overlaps libvirt network '{other}' "
                    f"({ipaddress.ip_interface(oip.interface).network})",
                )
    current = netxml.Network(rec["xml"]) if rec and rec["active"] else None
    running = current.spec() if current is not None else {}
    for key, routes in (("address", _host_routes), ("address6", _host_routes6)):
        host_bridge = network_modes.get(mode).host_bridge
        if not spec.get(key) or host_bridge or running.get(key) == spec[key]:
            continue
        mine = ipaddress.ip_interface(spec[key]).network
        for iface, routed in routes():
            if routed == mine and not (current is not None and iface == current.bridge):
                raise InvalidInput(
                    f"{name}:{key}",
                    f"{mine} is already routed on the host through {iface}; libvirt would "
                    "refuse to start the network",
                )
    bridge = spec.get("bridge")
    if not bridge:
        return None
    if network_modes.get(mode).host_bridge:
        if not _is_bridge(bridge):
            if test:
                return f"host bridge '{bridge}' does not exist yet"
            raise KvmError(
                f"host bridge '{bridge}' does not exist (declare it under kvm:bridges first)"
            )
        return None
    for other, orec in sorted(others.items()):
        if (
            netxml.Network(orec["config"]).bridge == bridge
            or netxml.Network(orec["xml"]).bridge == bridge
        ):
            raise InvalidInput(
                f"{name}:bridge", f"bridge '{bridge}' is already used by libvirt network '{other}'"
            )
    current_bridge = current.bridge if current is not None else None
    if bridge != current_bridge and _link_exists(bridge):
        raise InvalidInput(
            f"{name}:bridge",
            f"'{bridge}' already exists on the host; libvirt must create its own bridge in "
            f"mode {mode} (use mode: bridge for a host bridge)",
        )
    return None


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    """What :meth:`NetworkResource.plan` found, for apply and summary.

    ``record`` is the network's listing when the plan was made (None: absent),
    ``desired_xml`` the definition to write, ``restart_keys`` the changed keys
    that need a restart of the running network, ``attached`` the running VMs
    it reconnects afterwards.
    """

    record: Optional[dict[str, Any]]
    desired_xml: str
    restart_keys: tuple[str, ...] = ()
    attached: tuple[str, ...] = ()


class NetworkResource(plan.Resource):
    """One declared libvirt network for :func:`salt_kvm.plan.ensure`."""

    def __init__(
        self,
        session: Any,
        name: str,
        spec: dict[str, Any],
        *,
        restart: bool = False,
        test: bool = False,
    ) -> None:
        self.session = session
        self.name = name
        self.spec = spec
        self.mode = spec.get("mode", "nat")
        self.restart = bool(restart)
        self.test = test
        self.what = f"{self.mode} network '{name}'"

    # desired -> current -----------------------------------------------------

    def read(self) -> Optional[dict[str, Any]]:
        rec = networks(self.session).get(self.name)
        if rec is None:
            return None
        xml = rec["xml"] if rec["active"] else rec["config"]
        return {"record": rec, "spec": netxml.Network(xml).spec()}

    def _desired_flat(self):
        spec = dict(self.spec)
        spec["mode"] = self.mode
        flat = _flat(spec, declared=True)
        flat["active"] = True
        return flat

    def _diff(self, current: Optional[dict[str, Any]]) -> tuple[Changes, str, tuple[str, ...]]:
        """``(changes, desired_xml, restart_keys)`` from ``current``; pure (no host checks)."""
        rec: Any = current["record"] if current else None
        have: dict[str, Any] = {}
        if current:
            have = _flat(current["spec"])
            have["autostart"] = rec["autostart"]
            have["active"] = rec["active"]
        changes = plan.diff(have, self._desired_flat())
        net_spec = {k: v for k, v in self.spec.items() if k != "autostart"}
        net_spec["mode"] = self.mode
        base = rec["config"] if rec else None
        desired_xml = netxml.Network.build(self.name, net_spec, base=base).to_xml()
        if rec and not rec["persistent"]:
            changes["persistent"] = {"old": False, "new": True}
        text = xml_diff(base, desired_xml)
        if text and changes:
            changes["xml"] = {"diff": text}
        restart_keys: list[str] = []
        if current and rec["active"]:
            live_range = {
                f"{d}:{b}"
                for d in LIVE_RANGE_KEYS
                if (current["spec"].get(d) or {}).get("start")
                for b in ("start", "end")
            }
            restart_keys = sorted(k for k in changes if k in RESTART_KEYS and k not in live_range)
        return changes, desired_xml, tuple(restart_keys)

    def plan(self, current: Optional[dict[str, Any]]) -> Plan:
        rec = current["record"] if current else None
        note = _check_host(self.session, self.name, self.spec, rec, self.test)
        changes, desired_xml, restart_keys = self._diff(current)
        attached: list[str] = []
        if restart_keys and rec is not None:
            attached = attached_vms(self.session, self.name, xml=rec["xml"])
            if attached and not self.restart:
                raise Refused(
                    f"changing {', '.join(restart_keys)} needs a restart of the network, which "
                    f"would cut the link of running VM(s) {', '.join(attached)}; set "
                    "restart: True to restart it anyway"
                )
        return Plan(
            changes,
            existed=current is not None,
            payload=NetworkPlan(rec, desired_xml, restart_keys, tuple(attached)),
            notes=(note,) if note else (),
        )

    def verify(self, plan: Plan, after: Optional[dict[str, Any]]) -> Changes:
        changes, _xml, _restart = self._diff(after)
        return {k: v for k, v in changes.items() if k != "xml"}

    def summary(self, plan: Plan, test: bool) -> str:
        changes = plan.changes
        payload = plan.payload
        keys = ", ".join(sorted(k for k in changes if k not in ("xml", "active")))
        created = "active" in changes and changes["active"]["old"] is None
        started = "active" in changes and changes["active"]["old"] is False
        would = "would be" if test else "was"
        if created:
            text = f"{self.what} {would} created and started"
        elif keys:
            text = f"{self.what} {would} changed ({keys})" + (" and started" if started else "")
        else:
            text = f"{self.what} {would} started"
        if payload.restart_keys:
            verb = "would be restarted" if test else "was restarted"
            text += f" and {verb} to apply {', '.join(payload.restart_keys)}"
            if payload.attached:
                were = "would be" if test else "were"
                text += f" (VMs {', '.join(payload.attached)} {were} reconnected)"
        return text + "".join(f" (note: {note})" for note in plan.notes)

    # apply / restore -----------------------------------------------------------

    def apply(self, plan: Plan, undo: Undo) -> None:
        payload = plan.payload
        changes = plan.changes
        lv = _lv()
        conn = self.session.conn
        undo.record("desired_xml", payload.desired_xml)
        try:
            if payload.record is None:
                net = conn.networkDefineXML(payload.desired_xml)
                if self.spec.get("autostart") is not None:
                    net.setAutostart(1 if self.spec["autostart"] else 0)
                net.create()
                return
            rec = payload.record
            net = conn.networkLookupByName(self.name)
            xml_changes = [
                k for k in changes if k not in ("active", "autostart", "xml", "persistent")
            ]
            live_only = bool(xml_changes) and rec["active"] and not payload.restart_keys
            if ("xml" in changes or "persistent" in changes) and not (
                live_only and rec["persistent"]
            ):
                net = conn.networkDefineXML(payload.desired_xml)
            if live_only:
                # DHCP hosts / range only: live, and in the definition when it differs there too
                self._update_dhcp(
                    net, rec, changes, undo, config="xml" in changes and rec["persistent"]
                )
            if "autostart" in changes:
                net.setAutostart(1 if self.spec["autostart"] else 0)
            if rec["active"] and payload.restart_keys:
                undo.record("touched_live")
                net.destroy()
                net.create()
                self._replug(self._live_bridge(net), payload.desired_xml)
            elif not net.isActive():
                net.create()
        # raw: the engine names the network, the comment carries libvirt's message alone
        except lv.libvirtError as exc:
            raise KvmError(_msg(exc)) from None
        finally:
            self.session.invalidate("network:")

    def _live_bridge(self, net):
        return netxml.Network(net.XMLDesc(0)).bridge

    def _update_dhcp(self, net, rec, changes, undo, config=True):
        """Change the DHCP range and add and remove static hosts live (and in the persistent
        definition)."""
        lv = _lv()
        flags = lv.VIR_NETWORK_UPDATE_AFFECT_LIVE | (
            lv.VIR_NETWORK_UPDATE_AFFECT_CONFIG if config else 0
        )
        live = netxml.Network(rec["xml"])
        for dkey, version in LIVE_RANGE_KEYS.items():
            if f"{dkey}:start" not in changes and f"{dkey}:end" not in changes:
                continue
            index = live.ip_index(version)
            old_range = live.ip(version).find("dhcp/range")
            want = {"start": self.spec[dkey]["start"], "end": self.spec[dkey]["end"]}
            undo.record("touched_live")
            net.update(
                lv.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                lv.VIR_NETWORK_SECTION_IP_DHCP_RANGE,
                index,
                netxml.range_xml(old_range.attrib),
                flags,
            )
            net.update(
                lv.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST,
                lv.VIR_NETWORK_SECTION_IP_DHCP_RANGE,
                index,
                netxml.range_xml(want),
                flags,
            )
        for key, (version, _pkey) in LIVE_HOST_KEYS.items():
            if key not in changes:
                continue
            index = live.ip_index(version)
            old = {netxml.host_tuple(h): h for h in changes[key]["old"] or []}
            new = {netxml.host_tuple(h): h for h in changes[key]["new"] or []}
            for tup, host in old.items():
                if tup not in new:
                    undo.record("touched_live")
                    net.update(
                        lv.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                        lv.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                        index,
                        netxml.host_xml(host),
                        flags,
                    )
            for tup, host in new.items():
                if tup not in old:
                    undo.record("touched_live")
                    net.update(
                        lv.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                        lv.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                        index,
                        netxml.host_xml(host),
                        flags,
                    )

    def _replug(self, bridge: Optional[str], xml: Optional[str]) -> list[str]:
        """Put the taps of running VMs on this network back on its bridge after a restart
        (the VMs found from ``xml``, the network's declared definition)."""
        if not bridge or not _is_bridge(bridge):
            return []
        self.session.invalidate(MEMO_DOMAINS)
        taps = [
            i["tap"]
            for i in vm_interfaces(self.session, self.name, xml=xml)
            if i["running"] and i["tap"]
        ]
        moved: list[str] = []
        if not taps:
            return moved
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

        try:
            with IPRoute() as ipr:
                br = ipr.link_lookup(ifname=bridge)
                for tap in taps if br else []:
                    idx = ipr.link_lookup(ifname=tap)
                    if not idx:
                        continue
                    link = ipr.get_links(idx[0])[0]
                    if link.get_attr("IFLA_MASTER") != br[0]:
                        ipr.link("set", index=idx[0], master=br[0])
                        ipr.link("set", index=idx[0], state="up")
                        moved.append(tap)
        except Exception as exc:  # pylint: disable=broad-except
            raise KvmError(
                f"network '{self.name}' restarted, but putting the VM taps back on {bridge} "
                f"failed: {exc}"
            ) from None
        if moved:
            log.info("network %s: reconnected taps %s to %s", self.name, ", ".join(moved), bridge)
        return moved

    def restore(self, before: Optional[dict[str, Any]], undo: Undo) -> Optional[str]:
        lv = _lv()
        conn = self.session.conn
        self.session.invalidate("network:")
        try:
            try:
                net = conn.networkLookupByName(self.name)
            except lv.libvirtError:  # raw: not there (any more) is an answer, not an error
                net = None
            if before is None:
                if net is not None:
                    if net.isActive():
                        net.destroy()
                    if net.isPersistent():
                        net.undefine()
                return f"the host as it was (network '{self.name}' removed again)"
            rec = before["record"]
            if rec["persistent"]:
                net = conn.networkDefineXML(rec["config"])
            if net is None:
                return None
            if rec["persistent"]:
                net.setAutostart(1 if rec["autostart"] else 0)
            if rec["active"]:
                if net.isActive() and "touched_live" in undo:
                    net.destroy()
                if not net.isActive():
                    net.create()
                    self._replug(netxml.Network(net.XMLDesc(0)).bridge, undo.get("desired_xml"))
            elif net.isActive():
                net.destroy()
            return f"network '{self.name}' as it was"
        finally:
            self.session.invalidate("network:")


def network_present(
    session: Any, name: str, *, test: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """State: network ``name`` is defined as declared, running, with its autostart flag."""
    try:
        full = schema.validate_args(schema.NETWORK, name, kwargs, name_field=schema.OBJNAME)
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"network '{name}': {exc}")
    spec = plan.declared(full, state_only=STATE_ONLY_KEYS)
    resource = NetworkResource(session, name, spec, restart=full.get("restart", False), test=test)
    return plan.ensure(name, resource, test=test)


def network_absent(
    session: Any, name: str, *, force: bool = False, test: bool = False
) -> dict[str, Any]:
    """State: network ``name`` does not exist (refuses with running VMs attached unless
    ``force``)."""
    try:
        schema.validate(schema.OBJNAME, name, name)
        schema.validate(schema.Bool(), force, f"{name}:force")
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"network '{name}': {exc}")

    def exists():
        rec = networks(session).get(name)
        if rec is None:
            return None
        out = netxml.Network(rec["config"]).spec()
        out["active"] = rec["active"]
        return out

    def guard(_current):
        vms = attached_vms(session, name)
        if vms and not force:
            raise Refused(
                f"running VMs are attached ({', '.join(vms)}) and would lose their link; set "
                "force: True to remove it anyway"
            )

    def remove(_current):
        _remove(session, name)

    return plan.absent(name, f"network '{name}'", exists, remove, test=test, guard=guard)
