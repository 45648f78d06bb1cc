"""libvirt networks: NAT, routed, isolated, open and bridged, declared per host.

Execution functions (:func:`list_networks`, :func:`show`, :func:`define`,
:func:`start`, :func:`stop`, :func:`undefine`, :func:`set_autostart`,
:func:`leases`) and the states :func:`present` / :func:`absent`. Every function
takes the run's :class:`~salt_kvm.conn.Session` first; nothing here touches Salt.

How :func:`present` applies a change:

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

import ipaddress
import logging
import os

from salt_kvm import conn as _conn
from salt_kvm import network_modes, plan, schema
from salt_kvm.conn import libvirt_errors
from salt_kvm.errors import InvalidInput, KvmError, NotFound, Refused
from salt_kvm.xml import network as netxml
from salt_kvm.xml.base import xml_diff

log = logging.getLogger(__name__)

#: session.memo keys (invalidated with the prefix ``network:`` after every write)
MEMO_NETWORKS = "network:list"
MEMO_DOMAINS = "network:domains"

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


def _lv():
    return _conn.libvirt


def _msg(exc):
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
        except lv.libvirtError:  # it went away while we listed (another run); skip it
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


def networks(session):
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
        except lv.libvirtError:
            continue
    return out


def domains(session):
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
    except lv.libvirtError as exc:
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


def vm_interfaces(session, name, xml=None):
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


def attached_vms(session, name, xml=None):
    """Names of the running VMs attached to network ``name`` (they lose their link on a restart)."""
    return sorted({i["vm"] for i in vm_interfaces(session, name, xml) if i["running"]})


# --- execution functions --------------------------------------------------------


def list_networks(session):
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


def show(session, name):
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
            "interfaces": vm_interfaces(session, name, rec["xml"]),
        }
    )
    out["vms"] = sorted({i["vm"] for i in out["interfaces"]})
    out["attached"] = attached_vms(session, name, rec["xml"])
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
    return {k: v for k, v in spec.items() if k not in STATE_ONLY_KEYS}


def define(session, name, **kwargs):
    """Define network ``name`` (or update its persistent definition); it is not started."""
    spec = _validated(name, kwargs)
    autostart = spec.pop("autostart", None)
    rec = networks(session).get(name)
    base = rec["config"] if rec else None
    _check_host(session, name, spec, rec, test=False)
    xml = netxml.Network.build(name, spec, base=base).to_xml()
    lv = _lv()
    try:
        net = session.conn.networkDefineXML(xml)
        if autostart is not None:
            net.setAutostart(1 if autostart else 0)
    except lv.libvirtError as exc:
        raise KvmError(f"cannot define network '{name}': {_msg(exc)}") from None
    finally:
        session.invalidate("network:")
    return show(session, name)


def start(session, name):
    """Start network ``name``; returns True (also when it was running)."""
    schema.validate(schema.OBJNAME, name, "name")
    net = _lookup(session, name)
    lv = _lv()
    try:
        if not net.isActive():
            net.create()
    except lv.libvirtError as exc:
        raise KvmError(f"cannot start network '{name}': {_msg(exc)}") from None
    finally:
        session.invalidate("network:")
    return True


def _guard_vms(session, name, force, action):
    vms = attached_vms(session, name)
    if vms and not force:
        raise Refused(
            f"network '{name}' has running VMs attached ({', '.join(vms)}); {action} would cut their link (force: True to do it anyway)"
        )


def stop(session, name, force=False):
    """Stop (destroy) network ``name``; refuses with running VMs attached unless ``force``."""
    schema.validate(schema.OBJNAME, name, "name")
    net = _lookup(session, name)
    if not net.isActive():
        return True
    _guard_vms(session, name, force, "stopping it")
    lv = _lv()
    try:
        net.destroy()
    except lv.libvirtError as exc:
        raise KvmError(f"cannot stop network '{name}': {_msg(exc)}") from None
    finally:
        session.invalidate("network:")
    return True


def _remove(session, name):
    net = _lookup(session, name)
    lv = _lv()
    try:
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()
    except lv.libvirtError as exc:
        raise KvmError(f"cannot remove network '{name}': {_msg(exc)}") from None
    finally:
        session.invalidate("network:")


def undefine(session, name, force=False):
    """Stop (if running) and undefine network ``name``; refuses with running VMs attached unless ``force``."""
    schema.validate(schema.OBJNAME, name, "name")
    _record(session, name)
    _guard_vms(session, name, force, "removing it")
    _remove(session, name)
    return True


def set_autostart(session, name, enabled=True):
    """Start network ``name`` at boot (or not)."""
    schema.validate(schema.OBJNAME, name, "name")
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled", f"{enabled!r} is not true or false")
    net = _lookup(session, name)
    lv = _lv()
    try:
        net.setAutostart(1 if enabled else 0)
    except lv.libvirtError as exc:
        raise KvmError(f"cannot set autostart of network '{name}': {_msg(exc)}") from None
    finally:
        session.invalidate("network:")
    return enabled


def leases(session, name):
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
    return sorted(out, key=lambda l: (l["type"], l["ip"] or ""))


# --- the states ------------------------------------------------------------------


def _flat(spec, declared=False):
    """Pillar keys -> comparable flat keys (``dhcp`` becomes ``dhcp:start``, ``dhcp:end``, ``dhcp:hosts``)."""
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
    """``[(interface, IPv4Network)]`` of the host's routes (what libvirt checks before starting a network)."""
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
    """``[(interface, IPv6Network)]`` of the host's IPv6 routes (default and host routes left out)."""
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
                    f"{mine} overlaps libvirt network '{other}' ({ipaddress.ip_interface(oip.interface).network})",
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
                    f"{mine} is already routed on the host through {iface}; libvirt would refuse to start the network",
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
            f"'{bridge}' already exists on the host; libvirt must create its own bridge in mode {mode} (use mode: bridge for a host bridge)",
        )
    return None


class NetworkResource(plan.Resource):
    """One declared libvirt network for :func:`salt_kvm.plan.ensure`."""

    def __init__(self, session, name, spec, restart=False, test=False):
        self.session = session
        self.name = name
        self.spec = spec
        self.mode = spec.get("mode", "nat")
        self.restart = bool(restart)
        self.test = test
        self.what = f"{self.mode} network '{name}'"
        self.note = None
        self.restart_keys = []
        self.attached = []
        self.desired_xml = None
        self._verifying = False
        self._touched_live = False

    # desired -> current -----------------------------------------------------

    def read(self):
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

    def changes(self, current):
        rec = current["record"] if current else None
        if not self._verifying:
            self.note = _check_host(self.session, self.name, self.spec, rec, self.test)
        have = {}
        if current:
            have = _flat(current["spec"])
            have["autostart"] = rec["autostart"]
            have["active"] = rec["active"]
        changes = plan.diff(have, self._desired_flat())
        net_spec = {k: v for k, v in self.spec.items() if k != "autostart"}
        net_spec["mode"] = self.mode
        base = rec["config"] if rec else None
        self.desired_xml = netxml.Network.build(self.name, net_spec, base=base).to_xml()
        if rec and not rec["persistent"]:
            changes["persistent"] = {"old": False, "new": True}
        text = xml_diff(base, self.desired_xml)
        if text and changes:
            changes["xml"] = {"diff": text}
        self.restart_keys = []
        if rec and rec["active"]:
            live_range = {
                f"{d}:{b}"
                for d in LIVE_RANGE_KEYS
                if (current["spec"].get(d) or {}).get("start")
                for b in ("start", "end")
            }
            self.restart_keys = sorted(
                k for k in changes if k in RESTART_KEYS and k not in live_range
            )
        self.attached = []
        if self.restart_keys and not self._verifying:
            self.attached = attached_vms(self.session, self.name, rec["xml"])
            if self.attached and not self.restart:
                raise Refused(
                    f"changing {', '.join(self.restart_keys)} needs a restart of the network, which would cut the link of "
                    f"running VM(s) {', '.join(self.attached)}; set restart: True to restart it anyway"
                )
        return changes

    def verify(self, after):
        saved = (self.restart_keys, self.attached, self.desired_xml)
        self._verifying = True
        try:
            return {k: v for k, v in self.changes(after).items() if k != "xml"}
        finally:
            self._verifying = False
            self.restart_keys, self.attached, self.desired_xml = saved

    def summary(self, changes, test):
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
        if self.restart_keys:
            verb = "would be restarted" if test else "was restarted"
            text += f" and {verb} to apply {', '.join(self.restart_keys)}"
            if self.attached:
                text += f" (VMs {', '.join(self.attached)} {'would be' if test else 'were'} reconnected)"
        if self.note:
            text += f" (note: {self.note})"
        return text

    # apply / restore -----------------------------------------------------------

    def apply(self, current, changes):
        lv = _lv()
        conn = self.session.conn
        try:
            if current is None:
                net = conn.networkDefineXML(self.desired_xml)
                if self.spec.get("autostart") is not None:
                    net.setAutostart(1 if self.spec["autostart"] else 0)
                net.create()
                return
            rec = current["record"]
            net = conn.networkLookupByName(self.name)
            xml_changes = [
                k for k in changes if k not in ("active", "autostart", "xml", "persistent")
            ]
            live_only = bool(xml_changes) and rec["active"] and not self.restart_keys
            if ("xml" in changes or "persistent" in changes) and not (
                live_only and rec["persistent"]
            ):
                net = conn.networkDefineXML(self.desired_xml)
            if live_only:
                # DHCP hosts / range only: live, and in the definition when it differs there too
                self._update_dhcp(net, rec, changes, config="xml" in changes and rec["persistent"])
            if "autostart" in changes:
                net.setAutostart(1 if self.spec["autostart"] else 0)
            if rec["active"] and self.restart_keys:
                self._touched_live = True
                net.destroy()
                net.create()
                self._replug(self._live_bridge(net))
            elif not net.isActive():
                net.create()
        except lv.libvirtError as exc:
            raise KvmError(_msg(exc)) from None
        finally:
            self.session.invalidate("network:")

    def _live_bridge(self, net):
        return netxml.Network(net.XMLDesc(0)).bridge

    def _update_dhcp(self, net, rec, changes, config=True):
        """Change the DHCP range and add and remove static hosts live (and in the persistent definition)."""
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
            self._touched_live = True
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
                    self._touched_live = True
                    net.update(
                        lv.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                        lv.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                        index,
                        netxml.host_xml(host),
                        flags,
                    )
            for tup, host in new.items():
                if tup not in old:
                    self._touched_live = True
                    net.update(
                        lv.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                        lv.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                        index,
                        netxml.host_xml(host),
                        flags,
                    )

    def _replug(self, bridge):
        """Put the taps of running VMs on this network back on its bridge after a restart."""
        if not bridge or not _is_bridge(bridge):
            return []
        self.session.invalidate(MEMO_DOMAINS)
        taps = [
            i["tap"]
            for i in vm_interfaces(self.session, self.name, self.desired_xml)
            if i["running"] and i["tap"]
        ]
        moved = []
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
                f"network '{self.name}' restarted, but putting the VM taps back on {bridge} failed: {exc}"
            ) from None
        if moved:
            log.info("network %s: reconnected taps %s to %s", self.name, ", ".join(moved), bridge)
        return moved

    def restore(self, before):
        lv = _lv()
        conn = self.session.conn
        self.session.invalidate("network:")
        try:
            try:
                net = conn.networkLookupByName(self.name)
            except lv.libvirtError:
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
                if net.isActive() and self._touched_live:
                    net.destroy()
                if not net.isActive():
                    net.create()
                    self._replug(netxml.Network(net.XMLDesc(0)).bridge)
            elif net.isActive():
                net.destroy()
            return f"network '{self.name}' as it was"
        finally:
            self.session.invalidate("network:")


def present(session, name, test=False, **kwargs):
    """State: network ``name`` is defined as declared, running, with its autostart flag."""
    try:
        full = schema.validate_args(schema.NETWORK, name, kwargs, name_field=schema.OBJNAME)
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"network '{name}': {exc}")
    spec = {k: v for k, v in full.items() if k not in STATE_ONLY_KEYS}
    resource = NetworkResource(session, name, spec, restart=full.get("restart", False), test=test)
    return plan.ensure(name, resource, test)


def absent(session, name, force=False, test=False):
    """State: network ``name`` does not exist (refuses with running VMs attached unless ``force``)."""
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
                f"running VMs are attached ({', '.join(vms)}) and would lose their link; set force: True to remove it anyway"
            )

    def remove(_current):
        _remove(session, name)

    return plan.absent(name, f"network '{name}'", exists, remove, test=test, guard=guard)
