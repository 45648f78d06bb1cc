"""Kernel bridges over netlink: show, change, and declare them without losing the host.

Everything goes over netlink (never ``ip``/``brctl``): changes through
pyroute2, imported only when something changes; reads (the whole no-op path,
lookups and read-backs) through :class:`salt_kvm.bridge_netlink.Reader`.
Every function takes ``netns`` (an ``ip netns`` name; ``None`` is the current
namespace), so the same code runs the host and the tests' throwaway namespaces.

The state :func:`bridge_present` runs :class:`BridgeResource` through
:func:`salt_kvm.plan.ensure`:

* only declared keys and declared ports are compared; ports nobody declared
  (the taps libvirt attaches for VMs) are never removed;
* kernel rounding is normalised (STP timers read back in 1/100 s through
  jiffies, MAC case, port order), so a second run changes nothing;
* **uplink migration**: when a declared port holds addresses or routes (the
  host's own uplink), they move to the bridge in one burst of netlink
  messages, and the bridge takes the port's MAC (DHCP leases and switch port
  security still match). Then a probe runs (the declared ``probe``, or, when
  the change touches the default route, a ping of the gateway, and a TCP
  connection to the Salt master when its route moves with the uplink); if it fails,
  or the read-back does not match, addresses, routes, port membership, port
  MTUs and the bridge itself are put back exactly as they were;
* ``persist`` writes the host's own network configuration
  (:mod:`salt_kvm.persist`) so the bridge survives a reboot.

:func:`bridge_absent` refuses while VM taps are attached (``force`` overrides) and
while the bridge carries the host's addresses or default route.

Every change (the states outside ``test=True``, and the execution functions
that change bridges) runs under :func:`change_lock`, salt-kvm's own ``flock``
per network namespace, from the first read to the end of the probe and any
rollback. A run reads a namespace once (``session.memo``); a bridge it changes
is read back into that dump (:func:`salt_kvm.bridge_netlink.refresh`) rather
than dropping it, and only a failure drops the whole dump.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from salt_kvm import bridge_attrs, conn, plan, schema
from salt_kvm import bridge_netlink as nl
from salt_kvm.errors import InvalidInput, KvmError, NotFound, Refused
from salt_kvm.plan import Changes, Plan, Undo

log = logging.getLogger(__name__)

#: the kernel bridge attributes (pillar keys), one row each in :mod:`salt_kvm.bridge_attrs`
ATTRS = bridge_attrs.KEYS
PORT_KEYS = ("cost", "priority", "hairpin", "vlans")
_VLAN_PORT = re.compile(r"^(?P<parent>.+)\.(?P<vid>\d{1,4})$")
#: keys the state takes besides the pillar record (not pillar keys)
EXTRA_ARGS = ("netns", "root")


# --- reading ---------------------------------------------------------------


def _memo_key(netns: Optional[str]) -> str:
    return conn.memo_key("bridge", "host", netns or "")


def host_state(session: Any, netns: Optional[str] = None) -> dict[str, Any]:
    """One dump of ``netns`` per run (memoised in the session)."""
    if session is None:
        return nl.load(netns)
    return session.memo(_memo_key(netns), lambda: nl.load(netns))


def _invalidate(session: Any, netns: Optional[str]) -> None:
    """Forget the memoised dump of ``netns`` (only that namespace's)."""
    if session is not None:
        session.cache.pop(_memo_key(netns), None)


# --- our lock around bridge changes ------------------------------------------

LOCK_DIR = "/run/salt-kvm"
#: seconds to wait for another salt-kvm bridge change (a probe and a rollback) in the same namespace
LOCK_TIMEOUT = 120.0
_LOCK_POLL = 0.05


def lock_path(netns: Optional[str] = None) -> str:
    """``/run/salt-kvm/bridge-<netns or host>.lock``."""
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", netns) if netns else "host"
    return os.path.join(LOCK_DIR, f"bridge-{label}.lock")


class _ChangeLock:
    """What :func:`change_lock` yields: set ``changed`` when the host may have changed."""

    changed = True


def _lock_content(fd):
    try:
        return os.pread(fd, 256, 0).decode("ascii", "replace").split()
    except OSError:
        return []


def _lock_write(fd, pid, generation):
    # one fixed-size record overwritten in place (no ftruncate: it is slow on a locked file)
    with contextlib.suppress(OSError):
        os.pwrite(fd, f"{pid} {generation}".ljust(63).encode("ascii")[:63] + b"\n", 0)


@contextlib.contextmanager
def change_lock(
    session: Any, netns: Optional[str] = None, *, timeout: Optional[float] = None
) -> Iterator[_ChangeLock]:
    """Exclusive ``flock`` on :func:`lock_path` around one change of bridges in ``netns``.

    Held from the first read to the end of the probe and the rollback, so two
    salt-kvm processes (``salt-call kvm.bridge_*`` beside a ``state.apply``,
    or ``state.apply concurrent=True``) never interleave an uplink migration.
    Waits up to ``timeout`` seconds (:data:`LOCK_TIMEOUT`), then fails with
    "another salt-kvm bridge change is running (pid N)".

    The lock file holds ``<pid of the holder> <generation>``; the generation
    changes whenever a holder changed something, so a session whose memoised
    dump predates another process's change reads the namespace again.
    """
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    path = lock_path(netns)
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise KvmError(f"cannot open the bridge lock {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    content = _lock_content(fd)
                    holder = content[0] if content and content[0].isdigit() else "unknown"
                    raise KvmError(
                        f"another salt-kvm bridge change is running (pid {holder}); "
                        f"gave up after {timeout:g} s waiting for {path}"
                    ) from None
                time.sleep(_LOCK_POLL)
        content = _lock_content(fd)
        generation = content[1] if len(content) > 1 else "0"
        if content[:1] != [str(os.getpid())]:
            _lock_write(fd, os.getpid(), generation)
        gen_key = conn.memo_key("bridge", "lockgen", netns or "")
        if session is not None and session.cache.get(gen_key) != generation:
            _invalidate(session, netns)  # changed by another process since our dump
            session.cache[gen_key] = generation
        lock = _ChangeLock()
        try:
            yield lock
        finally:
            if lock.changed:
                generation = f"{os.getpid()}-{time.time_ns()}"
                _lock_write(fd, os.getpid(), generation)
                if session is not None:
                    session.cache[gen_key] = generation
    finally:
        os.close(fd)  # releases the flock


def vm_taps(session: Any) -> dict[str, dict[str, Any]]:
    """``{tap: {"vm": name, "mac": mac}}`` for the interfaces of running libvirt VMs."""
    if session is None:
        return {}

    def loader():
        from salt_kvm.xml import base  # pylint: disable=import-outside-toplevel

        out = {}
        try:
            domains = session.conn.listAllDomains(1)  # VIR_CONNECT_LIST_DOMAINS_ACTIVE
        except Exception as exc:  # pylint: disable=broad-except
            log.debug("cannot list VMs for tap owners: %s", exc)
            return out
        for dom in domains:
            try:
                root = base.parse(dom.XMLDesc(0))
            except Exception as exc:  # pylint: disable=broad-except
                log.debug(
                    "cannot read the XML of a VM for its taps: %s", exc
                )  # gone meanwhile: no owner shown
                continue
            for iface in root.iterfind("devices/interface"):
                target = iface.find("target")
                mac_el = iface.find("mac")
                if target is not None and target.get("dev"):
                    out[target.get("dev")] = {
                        "vm": dom.name(),
                        "mac": nl.mac(mac_el.get("address")) if mac_el is not None else None,
                    }
        return out

    try:
        return session.memo(conn.memo_key("bridge", "vmtaps"), loader)
    except KvmError as exc:  # libvirt not reachable: taps are still shown, without owners
        log.debug("no VM owners for taps: %s", exc)
        return {}


def _tap_owners(session, host, netns, bridge=None):
    """:func:`vm_taps` when a tap is a port of ``bridge`` (any bridge: None) and the
    bridges are libvirt's own (its taps live in its, the root, namespace); else ``{}``."""
    if netns or not any(
        link["kind"] == "tun" and link["master"] and bridge in (None, link["master"])
        for link in host["links"].values()
    ):
        return {}
    return vm_taps(session)


def _view(session, host, name, netns):
    return nl.bridge_view(host, name, vms=_tap_owners(session, host, netns, name))


def _bridge_or_fail(host, name, netns):
    link = host["links"].get(name)
    if link is None:
        raise NotFound(f"bridge {name!r} does not exist{_where(netns)}")
    if link["kind"] != "bridge":
        raise KvmError(f"{name!r} is a {link['kind'] or 'network device'}, not a bridge")
    return link


def _where(netns):
    return f" in network namespace {netns!r}" if netns else ""


# --- execution functions ---------------------------------------------------


def bridge_list(session: Any, netns: Optional[str] = None) -> list[dict[str, Any]]:
    """What ``brctl show`` shows (bridge, id, STP, ports) plus addresses, and
    ``vms``: the VM behind each tap port (``{tap: vm}``)."""
    host = nl.load(netns)
    owners = _tap_owners(session, host, netns)
    out = []
    for name in sorted(n for n, link in host["links"].items() if link["kind"] == "bridge"):
        view = nl.bridge_view(host, name)
        ports = [p["name"] for p in view["ports"]]
        out.append(
            {
                "name": name,
                "id": view["id"],
                "stp": view["stp"],
                "ports": ports,
                "vms": {port: owners[port]["vm"] for port in ports if port in owners},
                "addresses": view["addresses"],
            }
        )
    return out


def bridge_show(session: Any, name: str, *, netns: Optional[str] = None) -> dict[str, Any]:
    """Every attribute of bridge ``name``, its ports (VM taps with their VM),
    addresses and routes."""
    schema.validate(schema.IFNAME, name, "name")
    host = nl.load(netns)
    _bridge_or_fail(host, name, netns)
    return _view(session, host, name, netns)


def bridge_fdb(session: Any, name: str, *, netns: Optional[str] = None) -> list[dict[str, Any]]:
    """The bridge's MAC table: mac, port, vlan, kind (local/static/learned), VM where known."""
    schema.validate(schema.IFNAME, name, "name")
    host = nl.load(netns)
    link = _bridge_or_fail(host, name, netns)
    byindex = {item["index"]: item for item in host["links"].values()}
    vms = _tap_owners(session, host, netns, name)
    bymac = {v["mac"]: {"vm": v["vm"], "tap": tap} for tap, v in vms.items() if v.get("mac")}
    out = []
    for mac, ifindex, vlan, kind in nl.fdb(netns, link["index"]):
        port = byindex.get(ifindex, {}).get("name")
        entry = {"mac": mac, "port": port, "vlan": vlan, "kind": kind}
        owner = bymac.get(mac) or (
            vms.get(port) if kind == "local" and vms.get(port, {}).get("mac") == mac else None
        )
        entry["vm"] = owner["vm"] if owner else None
        out.append(entry)
    return sorted(out, key=lambda e: (e["port"] or "", e["mac"] or "", e["vlan"] or 0))


def _imperative(session, name, kwargs, netns, root, must_exist=None):
    resource = BridgeResource(session, name, kwargs, netns=netns, root=root, path=name)
    with change_lock(session, netns):
        # bad input raises InvalidInput here, before anything changes
        resource.plan(resource.read())
        if must_exist is not None:
            exists = name in host_state(session, netns)["links"]
            if must_exist and not exists:
                raise NotFound(f"bridge {name!r} does not exist{_where(netns)}")
            if not must_exist and exists:
                raise KvmError(f"{name!r} already exists{_where(netns)}")
        ret = plan.ensure(name, resource, test=False)
    if ret["result"] is False:
        raise KvmError(ret["comment"])
    return {"changes": ret["changes"], "comment": ret["comment"]}


def bridge_create(
    session: Any,
    name: str,
    *,
    netns: Optional[str] = None,
    root: Optional[str] = None,
    **attrs: Any,
) -> dict[str, Any]:
    """Create bridge ``name`` with ``attrs`` (the pillar keys); validated like the state."""
    return _imperative(session, name, attrs, netns, root, must_exist=False)


def bridge_set(
    session: Any,
    name: str,
    *,
    netns: Optional[str] = None,
    root: Optional[str] = None,
    **attrs: Any,
) -> dict[str, Any]:
    """Change attributes (the pillar keys) of existing bridge ``name``."""
    return _imperative(session, name, attrs, netns, root, must_exist=True)


def bridge_port_add(
    session: Any,
    bridge: str,
    port: str,
    *,
    netns: Optional[str] = None,
    root: Optional[str] = None,
    **attrs: Any,
) -> dict[str, Any]:
    """Add ``port`` (with cost, priority, hairpin, vlans) to existing ``bridge``;
    moves its addresses."""
    spec: dict[str, Any] = {"name": port}
    spec.update({k: v for k, v in attrs.items() if k in PORT_KEYS})
    rest = {k: v for k, v in attrs.items() if k not in PORT_KEYS}
    rest["ports"] = [spec]
    return _imperative(session, bridge, rest, netns, root, must_exist=True)


def bridge_port_remove(
    session: Any, bridge: str, port: str, *, netns: Optional[str] = None
) -> dict[str, Any]:
    """Take ``port`` out of ``bridge`` (its addresses are not moved back)."""
    schema.validate(schema.IFNAME, bridge, "bridge")
    schema.validate(schema.IFNAME, port, "port")
    with change_lock(session, netns):
        host = nl.load(netns)
        _bridge_or_fail(host, bridge, netns)
        link = host["links"].get(port)
        if link is None or link["master"] != bridge:
            raise InvalidInput("port", f"{port!r} is not a port of bridge {bridge!r}")
        try:
            with nl.netlink(netns) as ipr:
                try:
                    ipr.link("set", index=link["index"], master=0)
                except Exception as exc:  # pylint: disable=broad-except
                    raise KvmError(
                        f"cannot remove {port} from {bridge}: {nl.netlink_message(exc)}"
                    ) from None
        finally:
            _invalidate(session, netns)
    return {"bridge": bridge, "removed": port}


def bridge_delete(
    session: Any, name: str, *, force: bool = False, netns: Optional[str] = None
) -> dict[str, Any]:
    """Delete bridge ``name``; refused with VM taps attached or host addresses on
    it, unless ``force``."""
    schema.validate(schema.IFNAME, name, "name")
    with change_lock(session, netns):
        host = nl.load(netns)
        _bridge_or_fail(host, name, netns)
        _guard_absent(session, host, name, force, netns)
        try:
            _delete_link(netns, name, host["links"][name]["index"])
        finally:
            _invalidate(session, netns)
    return {"deleted": name}


def _delete_link(netns, name, index):
    with nl.netlink(netns) as ipr:
        try:
            ipr.link("del", index=index)
        except Exception as exc:  # pylint: disable=broad-except
            raise KvmError(f"cannot delete {name}: {nl.netlink_message(exc)}") from None


def _guard_absent(session, host, name, force, netns):
    view = _view(session, host, name, netns)
    taps = [p for p in view["ports"] if p["kind"] == "tun"]
    if force:
        return
    if taps:
        names = ", ".join(f"{p['name']} (VM {p['vm']})" if p.get("vm") else p["name"] for p in taps)
        raise Refused(f"VM taps are attached: {names}; stop the VMs or give force: True")
    if view["addresses"] or view["gateway"] or view["gateway6"]:
        held = ", ".join(
            view["addresses"]
            + [f"default via {g}" for g in (view["gateway"], view["gateway6"]) if g]
        )
        raise Refused(
            f"it carries the host's addresses/routes ({held}); deleting it could cut "
            "the host off; give force: True"
        )


# --- the state -------------------------------------------------------------


def _run(what, func, *args, **kwargs):
    """``func(*args, **kwargs)``; a netlink error becomes ``KvmError("<what>: <message>")``."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:  # pylint: disable=broad-except
        raise KvmError(f"{what}: {nl.netlink_message(exc)}") from None


def _persist_changes(backend, files):
    """The ``persist`` change: the files not yet as rendered (``None``: all are)."""
    from salt_kvm import persist  # pylint: disable=import-outside-toplevel

    stale = persist.pending(files)
    if not stale:
        return None
    return {"old": stale, "new": {"backend": backend, "files": sorted(files)}}


def _port_name_ok(name):
    match = _VLAN_PORT.match(name)
    return (match.group("parent"), int(match.group("vid"))) if match else (None, None)


def _route_key(route):
    """A route as the kernel keeps it: ``default`` as a prefix of its family, the kernel's
    default metric (IPv4 none, IPv6 1024) when none is declared; sortable."""
    to, via, metric = route["to"], route.get("via"), route.get("metric")
    v6 = nl.route_family(to, via) == socket.AF_INET6
    if metric is None and v6:
        metric = 1024
    if metric == 0 and not v6:
        metric = None
    return (nl.route_prefix(to, via), via or "", -1 if metric is None else metric)


def _default_routes(host, name, gateways):
    """Default routes through bridge ``name`` other than the ``gateway``/``gateway6`` route."""
    out = []
    for route in nl.static_routes(host, name):
        if route["dst"] != "default":
            continue
        v6 = route["family"] == socket.AF_INET6
        gateway = gateways.get("gateway6" if v6 else "gateway")
        if route["via"] == gateway and route["metric"] in ((None, 1024) if v6 else (None, 0)):
            continue
        view = nl.route_view(route)
        view["to"] = "::/0" if v6 else "0.0.0.0/0"
        out.append(view)
    return out


def _plan_ports(spec, view, host, new_vlan_ports):
    """``(the "ports" change or None, the uplinks)``: the declared ports whose declared
    attributes differ, and ``{port: {"addresses", "routes"}}`` of the ports joining the
    bridge that hold addresses or routes (what moves to the bridge)."""
    members = {p["name"]: p for p in view.get("ports", [])}
    old_ports, new_ports, uplinks = [], [], {}
    for port in sorted(spec.get("ports", []), key=lambda p: p["name"]):
        pname = port["name"]
        want = {"name": pname}
        for key in ("cost", "priority", "hairpin"):
            if key in port:
                want[key] = port[key]
        if "vlans" in port:
            want["vlans"] = nl.vlans_desired(port["vlans"])[0]
        have = members.get(pname)
        have_view = None
        if have is not None:
            have_view = {"name": pname}
            for key in want:
                if key != "name":
                    have_view[key] = have.get(key)
        if have_view != want:
            old_ports.append(have_view or {"name": pname, "member": False})
            new_ports.append(want)
        if pname not in members and pname not in new_vlan_ports:
            addrs = nl.global_addresses(host, pname)
            routes = nl.static_routes(host, pname)
            if addrs or routes:
                uplinks[pname] = {"addresses": addrs, "routes": routes}
    change = {"old": old_ports, "new": new_ports} if new_ports else None
    return change, uplinks


def _plan_addresses(spec, name, host, view, uplinks):
    """``(changes, addresses, gateways, routes)``: what bridge ``name`` ends up with
    (declared, else its own plus what moves from ``uplinks``) and how that differs."""
    changes = {}
    moved_addrs = [a["cidr"] for u in uplinks.values() for a in u["addresses"]]
    moved_routes = [r for u in uplinks.values() for r in u["routes"]]
    have_addrs = view.get("addresses", [])
    want_addrs = (
        spec["addresses"]
        if "addresses" in spec
        else have_addrs + [a for a in moved_addrs if a not in have_addrs]
    )
    if sorted(have_addrs) != sorted(want_addrs):
        changes["addresses"] = {"old": have_addrs, "new": want_addrs}
    want_gw = {}
    for key, family in (("gateway", socket.AF_INET), ("gateway6", socket.AF_INET6)):
        moved = [
            r["via"]
            for r in moved_routes
            if r["dst"] == "default" and r["family"] == family and r["via"]
        ]
        want = spec.get(key) or (moved[0] if moved else view.get(key))
        want_gw[key] = want
        if want != view.get(key):
            changes[key] = {"old": view.get(key), "new": want}
    have_routes = view.get("routes", [])
    if "routes" in spec:
        want_routes = sorted((dict(r) for r in spec["routes"]), key=_route_key)
        # a declared default route (a second one, with a metric) is not the gateway
        have_routes = have_routes + _default_routes(host, name, want_gw)
    else:
        extra = [nl.route_view(r) for r in moved_routes if r["dst"] != "default"]
        want_routes = sorted(
            have_routes + [r for r in extra if r not in have_routes], key=_route_key
        )
    if sorted(map(_route_key, have_routes)) != sorted(map(_route_key, want_routes)):
        changes["routes"] = {"old": have_routes, "new": want_routes}
    return changes, want_addrs, want_gw, want_routes


def _uplink_change(name, uplinks):
    """The ``uplink`` change: what moves from each uplink to bridge ``name``."""
    moved_routes = [r for u in uplinks.values() for r in u["routes"]]
    return {
        "old": {
            p: [a["cidr"] for a in u["addresses"]] + [_route_text(r) for r in u["routes"]]
            for p, u in uplinks.items()
        },
        "new": {
            name: [a["cidr"] for u in uplinks.values() for a in u["addresses"]]
            + [_route_text(r) for r in moved_routes]
        },
    }


@dataclasses.dataclass(frozen=True)
class BridgeSnapshot:
    """What :meth:`BridgeResource.read` returns: the namespace as dumped, and the
    bridge's view of it (``None``: no such bridge)."""

    host: Mapping[str, Any]
    view: Optional[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class BridgePlan:
    """The payload of a bridge's :class:`~salt_kvm.plan.Plan`: what apply does.

    ``host`` is the dump the plan was made from (apply looks up the uplinks'
    addresses and indexes in it, and patches the memoised dump from it);
    ``current`` the bridge's view then (``{}`` when it did not exist);
    ``uplinks`` ``{port: {"addresses", "routes"}}`` that move to the bridge;
    ``vlan_ports`` ``{name: (parent, vid)}`` VLAN sub-interfaces to create;
    ``addresses``, ``gateways``, ``routes``, ``mac`` what the bridge ends with;
    ``persist_backend`` and ``persist_files`` (``{path: content}``) the
    persisted configuration to write when ``persist`` is among the changes.
    """

    host: Mapping[str, Any]
    current: Mapping[str, Any]
    exists: bool
    uplinks: Mapping[str, Any]
    vlan_ports: Mapping[str, tuple[str, int]]
    addresses: tuple[str, ...]
    gateways: Mapping[str, Optional[str]]
    routes: tuple[dict[str, Any], ...]
    mac: Optional[str]
    persist_backend: Optional[str] = None
    persist_files: Mapping[str, Optional[str]] = dataclasses.field(default_factory=dict)


class BridgeResource(plan.Resource):
    """A kernel bridge as declared (the pillar keys of :data:`salt_kvm.schema.BRIDGE`).

    ``read`` returns a :class:`BridgeSnapshot`, ``plan`` a Plan whose payload is
    a :class:`BridgePlan`; apply records in the undo log the VLAN interfaces it
    created (``created_vlans``), the port VLANs it replaced (``vlans_before``)
    and the persisted files it overwrote (``persist_backup``), and restore puts
    back the whole namespace as the snapshot read before the change had it.
    """

    presence_key = "bridge"

    def __init__(
        self,
        session: Any,
        name: str,
        kwargs: Mapping[str, Any],
        *,
        netns: Optional[str] = None,
        root: Optional[str] = None,
        path: Optional[str] = None,
        master: Optional[tuple[str, int]] = None,
    ) -> None:
        self.session = session
        #: ``(host, port)`` of the Salt master: probed when its path moves with an uplink
        self.master = master
        self.name = name
        self.netns = netns
        self.root = root or "/"
        self.what = f"bridge {name!r}"
        path = path or str(name)
        self.path = path
        self.spec = plan.declared(
            schema.validate_args(schema.BRIDGE, name, kwargs, name_field=schema.IFNAME, path=path),
            state_only=("absent", "force"),
        )

    # -- read / compare ----------------------------------------------------

    def read(self) -> BridgeSnapshot:
        host = host_state(self.session, self.netns)
        return BridgeSnapshot(host, nl.bridge_view(host, self.name))

    def _check(self, host):
        """Bad input against the host: unknown port, port of another bridge, not a bridge."""
        links = host["links"]
        link = links.get(self.name)
        if link is not None and link["kind"] != "bridge":
            raise InvalidInput(
                self.path,
                f"{self.name!r} exists and is a {link['kind'] or 'network device'}, not a bridge",
            )
        vlans = {}
        for i, port in enumerate(self.spec.get("ports", [])):
            pname = port["name"]
            ppath = f"{self.path}:ports:{i}"
            plink = links.get(pname)
            if pname == self.name:
                raise InvalidInput(ppath, "a bridge cannot be its own port")
            if plink is None:
                parent, vid = _port_name_ok(pname)
                if parent is None or parent not in links:
                    raise InvalidInput(ppath, f"{pname!r} does not exist{_where(self.netns)}")
                if not 1 <= vid <= 4094:
                    raise InvalidInput(ppath, f"VLAN {vid} of {pname!r} is out of range 1-4094")
                vlans[pname] = (parent, vid)
                continue
            if plink["kind"] == "bridge":
                raise InvalidInput(ppath, f"{pname!r} is a bridge; a bridge cannot be a port")
            if plink["master"] and plink["master"] != self.name:
                raise InvalidInput(
                    ppath, f"{pname!r} is already a port of bridge {plink['master']!r}"
                )
            if port.get("vlans") and not self._vlan_filtering(link):
                raise InvalidInput(f"{ppath}:vlans", "needs vlan_filtering: true on the bridge")
        return vlans

    def _vlan_filtering(self, link):
        if "vlan_filtering" in self.spec:
            return self.spec["vlan_filtering"]
        return bool(link and link["bridge"] and link["bridge"].get("vlan_filtering"))

    def plan(self, current: BridgeSnapshot) -> Plan:
        """The changes from ``current`` (a :class:`BridgeSnapshot`) to the declared
        bridge, with a :class:`BridgePlan` as payload."""
        host = current.host
        new_vlan_ports = self._check(host)
        spec = self.spec
        view = current.view or {}
        exists = bool(view)
        changes: Changes = {}
        if not exists:
            changes["bridge"] = {"old": None, "new": self.name}
        for key in ATTRS:
            if key not in spec:
                continue
            have = view.get(key)
            want = spec[key]
            if key == "ageing_time" and have is None and view.get("topology_change"):
                continue  # hidden by the kernel during an STP topology change (see bridge_netlink)
            equal = nl.same_timer(have, want) if key in nl.TIMERS else have == want
            if not equal:
                changes[key] = {"old": have, "new": want}
        if "mtu" in spec and view.get("mtu") != spec["mtu"]:
            changes["mtu"] = {"old": view.get("mtu"), "new": spec["mtu"]}

        port_change, uplinks = _plan_ports(spec, view, host, new_vlan_ports)
        if port_change:
            changes["ports"] = port_change
        moved, want_addrs, want_gw, want_routes = _plan_addresses(
            spec, self.name, host, view, uplinks
        )
        changes.update(moved)

        want_mac = spec.get("mac")
        if not want_mac and uplinks:
            want_mac = host["links"][sorted(uplinks)[0]]["mac"]
        if not want_mac and not exists and spec.get("ports"):
            # what the kernel would pick (the lowest port MAC), set explicitly so it
            # does not flap when ports come and go
            want_mac = min(self._port_macs(host).values(), default=None)
        if want_mac and nl.mac(want_mac) != view.get("mac"):
            changes["mac"] = {"old": view.get("mac"), "new": nl.mac(want_mac)}
        if uplinks:
            changes["uplink"] = _uplink_change(self.name, uplinks)

        payload = BridgePlan(
            host=host,
            current=view,
            exists=exists,
            uplinks=uplinks,
            vlan_ports=new_vlan_ports,
            addresses=tuple(want_addrs),
            gateways=want_gw,
            routes=tuple(want_routes),
            mac=nl.mac(want_mac) if want_mac else view.get("mac"),
        )
        backend, files = self._persist_files(payload)
        if files:
            payload = dataclasses.replace(payload, persist_backend=backend, persist_files=files)
            persist_changes = _persist_changes(backend, files)
            if persist_changes:
                changes["persist"] = persist_changes
        return Plan(changes, existed=current.view is not None, payload=payload)

    def _port_macs(self, host):
        """MACs of the declared ports (a VLAN sub-interface to be made has its parent's)."""
        out = {}
        for port in self.spec.get("ports", []):
            link = host["links"].get(port["name"])
            if link is None:
                parent, _vid = _port_name_ok(port["name"])
                link = host["links"].get(parent)
            if link is not None and link["mac"]:
                out[port["name"]] = link["mac"]
        return out

    def verify(self, plan: Plan, after: BridgeSnapshot) -> Changes:
        """What still differs in the read-back (the uplink migration is not a difference)."""
        remaining = dict(self.plan(after).changes)
        remaining.pop("uplink", None)
        return remaining

    # -- persistence -------------------------------------------------------

    def persist_spec(self, p: BridgePlan) -> dict[str, Any]:
        """What the persisted configuration describes (declared + what moved), for plan ``p``."""
        spec = {k: self.spec[k] for k in ATTRS + ("mtu",) if k in self.spec}
        spec.update(
            {
                "name": self.name,
                "ports": sorted(self.spec.get("ports", []), key=lambda port: port["name"]),
                "addresses": list(p.addresses),
                "gateway": p.gateways["gateway"],
                "gateway6": p.gateways["gateway6"],
                "routes": list(p.routes),
                "mac": p.mac
                if (self.spec.get("mac") or p.mac in self._port_macs(p.host).values())
                else None,
                "vlan_ports": {k: {"parent": v[0], "id": v[1]} for k, v in p.vlan_ports.items()},
            }
        )
        for pname, link in p.host["links"].items():
            if link["kind"] == "vlan" and pname in {port["name"] for port in spec["ports"]}:
                spec["vlan_ports"][pname] = {"parent": link["parent"], "id": link["vlan_id"]}
        return spec

    def _persist_files(self, p):
        """``(backend, {path: content})`` of the persisted configuration (``{}``: none)."""
        backend = self.spec.get("persist", "none")
        if backend == "none":
            return None, {}
        from salt_kvm import persist  # pylint: disable=import-outside-toplevel

        if backend == "auto":
            backend = persist.detect(self.root)
        return backend, persist.render(backend, self.persist_spec(p), root=self.root)

    # -- apply -------------------------------------------------------------

    def apply(self, plan: Plan, undo: Undo) -> None:
        p = plan.payload
        changes = plan.changes
        # before: it asks the kernel how the master is reached now
        probe_spec = self._probe(p, changes)
        try:
            with nl.netlink(self.netns) as ipr, nl.reader(self.netns) as reader:
                self._apply(ipr, reader, p, changes, undo)
                self._refresh(reader, p, changes)
        except BaseException:
            _invalidate(self.session, self.netns)  # the host is half changed: read it all again
            raise
        if probe_spec:
            from salt_kvm import bridge_probe  # pylint: disable=import-outside-toplevel

            bridge_probe.run(probe_spec, self.netns)
        if "persist" in changes:
            from salt_kvm import persist  # pylint: disable=import-outside-toplevel

            undo.record("persist_backup", persist.write(p.persist_files))

    def _refresh(self, reader, p, changes):
        """Patch the memoised dump with what this change touched (not a full dump per bridge).

        The bridge and its declared ports are read again, and the addresses and
        routes when the change moved or set any (or changed the MTU, which can
        drop IPv6 addresses). A failure, the probe's included, drops the whole
        dump instead (``apply`` / ``restore``).
        """
        if self.session is None:
            return
        names = {self.name} | {port["name"] for port in self.spec.get("ports", [])}
        addresses = bool(
            {"addresses", "gateway", "gateway6", "routes", "uplink", "mtu"} & set(changes)
        )
        try:
            fresh = nl.refresh(reader, p.host, names, addresses=addresses)
        except Exception as exc:  # pylint: disable=broad-except
            log.debug(
                "cannot refresh the dump of %s, reading it again: %s",
                self.what,
                nl.netlink_message(exc),
            )
            _invalidate(self.session, self.netns)
            return
        self.session.cache[_memo_key(self.netns)] = fresh

    def _probe(self, p, changes):
        if self.spec.get("probe"):
            return self.spec["probe"]
        probe = {}
        risky = "uplink" in changes or "gateway" in changes or "gateway6" in changes
        target = p.gateways.get("gateway") or p.gateways.get("gateway6")
        if risky and target:
            probe["ping"] = target
        master = self._master_via_uplink(p)
        if master:
            probe["tcp"] = master
        return probe or None

    def _master_via_uplink(self, p):
        """``ip:port`` of the Salt master when the kernel routes to it through a moving uplink."""
        if not self.master or not p.uplinks:
            return None
        host, port = self.master
        try:
            address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
            with nl.netlink(self.netns) as ipr:
                routes = ipr.route("get", dst=address)
            oif = routes[0].get_attr("RTA_OIF") if routes else None
        except Exception as exc:  # pylint: disable=broad-except
            log.debug("no route to the Salt master %s: %s", host, exc)
            return None
        links = p.host["links"]
        uplinks = {links[name]["index"] for name in p.uplinks if name in links}
        if oif in uplinks:
            return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        return None

    def _apply(self, ipr, reader, p, changes, undo):
        """The changes of plan ``p``, written with pyroute2 (``ipr``); links looked up
        and read back with ``reader``; what restore must undo recorded in ``undo``."""
        spec = self.spec
        name = self.name

        def link(ifname):
            found = reader.get_link(ifname)
            if found is None:
                raise KvmError(f"{ifname} disappeared")
            return found

        known = {}

        def index(ifname):  # looked up once per apply (nothing here deletes or renames a link)
            if ifname not in known:
                known[ifname] = link(ifname)["index"]
            return known[ifname]

        # VLAN sub-interfaces for ports like eno1.100
        for vname, (parent, vid) in sorted(p.vlan_ports.items()):
            _run(
                f"cannot create VLAN interface {vname} (is the 8021q module available?)",
                ipr.link,
                "add",
                ifname=vname,
                kind="vlan",
                link=index(parent),
                vlan_id=vid,
            )
            undo.record("created_vlans", (*undo.get("created_vlans", ()), vname))
            _run(f"cannot bring {vname} up", ipr.link, "set", index=index(vname), state="up")

        br_kw = {}
        for key in ATTRS:
            if not p.exists and spec.get(key) == nl.ABSENT_DEFAULTS.get(key, object()):
                # a new bridge has it already (and a kernel without the feature refuses it)
                continue
            if key in changes or (not p.exists and key in spec):
                _nla, kw, kind = nl.BRIDGE_NLA[key]
                value = spec[key]
                br_kw[kw] = nl.centiseconds(value) if kind == "timer" else int(value)
        what = f"cannot create bridge {name}"
        if (
            br_kw.get(nl.BRIDGE_NLA["vlan_filtering"][1])
            or nl.BRIDGE_NLA["default_pvid"][1] in br_kw
        ):
            what += " (vlan_filtering needs a kernel with CONFIG_BRIDGE_VLAN_FILTERING)"
        if not p.exists:
            extra = {"address": p.mac} if "mac" in changes else {}
            _run(what, ipr.link, "add", ifname=name, kind="bridge", **br_kw, **extra)
        else:
            if br_kw:
                _run(
                    f"cannot set attributes of {name}",
                    ipr.link,
                    "set",
                    index=index(name),
                    kind="bridge",
                    **br_kw,
                )
            if "mac" in changes:
                _run(
                    f"cannot set the MAC of {name}",
                    ipr.link,
                    "set",
                    index=index(name),
                    address=p.mac,
                )
        br = index(name)

        # uplink migration: everything in one burst
        uplinks = p.uplinks
        for pname, uplink in uplinks.items():
            pidx = index(pname)
            for addr in uplink["addresses"]:
                _run(
                    f"cannot remove {addr['cidr']} from {pname}",
                    ipr.addr,
                    "del",
                    index=pidx,
                    address=addr["address"],
                    prefixlen=addr["prefixlen"],
                )
        members = {port["name"] for port in p.current.get("ports", [])}
        for port in spec.get("ports", []):
            if port["name"] not in members:
                _run(
                    f"cannot add {port['name']} to {name}",
                    ipr.link,
                    "set",
                    index=index(port["name"]),
                    master=br,
                )
        for uplink in uplinks.values():
            for addr in uplink["addresses"]:
                if "addresses" in spec and addr["cidr"] not in spec["addresses"]:
                    continue
                self._add_addr(
                    ipr, _run, br, addr["cidr"], nodad=True, broadcast=addr.get("broadcast")
                )
        if uplinks:
            _run(f"cannot bring {name} up", ipr.link, "set", index=br, state="up")
            for uplink in uplinks.values():
                for route in uplink["routes"]:
                    self._add_route(
                        ipr, _run, br, route["family"], route["dst"], route["via"], route["metric"]
                    )

        self._apply_ports(ipr, index, undo)

        if "mtu" in changes:
            for port in spec.get("ports", []):
                if link(port["name"]).get_attr("IFLA_MTU") < spec["mtu"]:
                    _run(
                        f"cannot raise the MTU of {port['name']}",
                        ipr.link,
                        "set",
                        index=index(port["name"]),
                        mtu=spec["mtu"],
                    )
            _run(f"cannot set the MTU of {name}", ipr.link, "set", index=br, mtu=spec["mtu"])

        self._apply_addresses(ipr, reader, br, p, changes)

    def _apply_ports(self, ipr, index, undo):
        """The declared ports: up, their attributes, their VLANs (the VLANs replaced
        recorded in ``undo`` as ``vlans_before``)."""
        spec = self.spec
        vlan_entries = None
        for port in spec.get("ports", []):
            pidx = index(port["name"])
            _run(f"cannot bring {port['name']} up", ipr.link, "set", index=pidx, state="up")
            kw = {}
            for key in ("cost", "priority", "hairpin"):
                if key in port:
                    kw[nl.PORT_NLA[key][1]] = int(port[key])
            if kw:
                _run(
                    f"cannot set port attributes of {port['name']}",
                    ipr.brport,
                    "set",
                    index=pidx,
                    **kw,
                )
            if "vlans" in port:
                if vlan_entries is None:
                    vlan_entries = nl._vlan_entries(ipr)  # pylint: disable=protected-access
                have = dict(vlan_entries.get(pidx, []))
                before = dict(undo.get("vlans_before", {}))
                before.setdefault(port["name"], dict(have))
                undo.record("vlans_before", before)
                want = nl.vlans_desired(port["vlans"])[1]
                for vid in sorted(set(have) - set(want)):
                    _run(
                        f"cannot remove VLAN {vid} from {port['name']}",
                        ipr.vlan_filter,
                        "del",
                        index=pidx,
                        vlan_info={"vid": vid},
                    )
                for vid, flags in sorted(want.items()):
                    if have.get(vid) != flags:
                        _run(
                            f"cannot add VLAN {vid} to {port['name']}",
                            ipr.vlan_filter,
                            "add",
                            index=pidx,
                            vlan_info={"vid": vid, "flags": flags},
                        )

    def _apply_addresses(self, ipr, reader, br, p, changes):
        """The bridge's addresses, gateways and routes as planned (``p``); the bridge up."""
        spec = self.spec
        name = self.name
        now = (
            {
                a["cidr"]
                for a in nl.global_addresses(
                    nl.refresh(reader, p.host, [name], addresses=True), name
                )
            }
            if "addresses" in changes
            else set()
        )
        if "addresses" in changes:
            for cidr in p.addresses:
                if cidr not in now:
                    self._add_addr(ipr, _run, br, cidr)
            for cidr in sorted(now - set(p.addresses)):
                iface = ipaddress.ip_interface(cidr)
                _run(
                    f"cannot remove {cidr} from {name}",
                    ipr.addr,
                    "del",
                    index=br,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                )
        _run(f"cannot bring {name} up", ipr.link, "set", index=br, state="up")
        for key, family in (("gateway", socket.AF_INET), ("gateway6", socket.AF_INET6)):
            if key in changes and p.gateways[key]:
                dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
                _run(
                    f"cannot set {key} {p.gateways[key]}",
                    ipr.route,
                    "replace",
                    family=family,
                    dst=dst,
                    gateway=p.gateways[key],
                    oif=br,
                    table=nl.RT_TABLE_MAIN,
                )
        if "routes" in changes:
            fresh = nl.refresh(reader, p.host, [name], addresses=True)
            have_routes = (nl.bridge_view(fresh, name) or {}).get("routes", [])
            if "routes" in spec:
                # declared routes are all the routes: extra default routes included
                have_routes = have_routes + _default_routes(fresh, name, p.gateways)
            have = {_route_key(r): r for r in have_routes}
            want = {_route_key(r): r for r in p.routes}
            for key in sorted(set(have) - set(want), key=str):
                route = have[key]
                family = nl.route_family(route["to"], route.get("via"))
                with contextlib.suppress(Exception):
                    ipr.route(
                        "del",
                        family=family,
                        dst=nl.route_prefix(route["to"], route.get("via")),
                        gateway=route.get("via"),
                        oif=br,
                        priority=route.get("metric"),
                        table=nl.RT_TABLE_MAIN,
                    )
            for key in sorted(set(want) - set(have), key=str):
                route = want[key]
                family = nl.route_family(route["to"], route.get("via"))
                self._add_route(
                    ipr, _run, br, family, route["to"], route.get("via"), route.get("metric")
                )

    @staticmethod
    def _add_addr(ipr, run, index, cidr, nodad=False, broadcast=None):
        iface = ipaddress.ip_interface(cidr)
        kw = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 4:
            kw["broadcast"] = broadcast or str(iface.network.broadcast_address)
        elif nodad:
            kw["flags"] = nl.IFA_F_NODAD
        try:
            ipr.addr("add", **kw)
        except Exception as exc:  # pylint: disable=broad-except
            if getattr(exc, "code", None) != 17:  # EEXIST: already there
                raise KvmError(f"cannot add {cidr}: {nl.netlink_message(exc)}") from None

    @staticmethod
    def _add_route(ipr, run, oif, family, dst, via, metric):
        kw = {"family": family, "oif": oif, "table": nl.RT_TABLE_MAIN}
        kw["dst"] = (
            ("0.0.0.0/0" if family == socket.AF_INET else "::/0") if dst == "default" else dst
        )
        if via:
            kw["gateway"] = via
        if metric is not None:
            kw["priority"] = metric
        run(f"cannot add route {dst}{' via ' + via if via else ''}", ipr.route, "replace", **kw)

    # -- restore -------------------------------------------------------------

    def restore(self, before: BridgeSnapshot, undo: Undo) -> Optional[str]:
        """Put back links, addresses and routes exactly as in ``before`` (the read
        the plan was made from), and the files apply overwrote."""
        # first: even a restore that fails half-way leaves no stale dump
        _invalidate(self.session, self.netns)
        first = before.host
        done = []
        with nl.netlink(self.netns) as ipr:
            now = nl.dump(ipr)
            links_then, links_now = first["links"], now["links"]
            touched = {self.name} | {p["name"] for p in self.spec.get("ports", [])}

            def idx(ifname):
                found = ipr.link_lookup(ifname=ifname)
                return found[0] if found else None

            # membership, MTU, up/down of the ports
            for pname in sorted(touched - {self.name}):
                then, cur = links_then.get(pname), links_now.get(pname)
                if then is None or cur is None:
                    continue
                if cur["master"] != then["master"]:
                    master = idx(then["master"]) if then["master"] else 0
                    ipr.link("set", index=cur["index"], master=master or 0)
                    back = f"back in {then['master']}" if then["master"] else f"out of {self.name}"
                    done.append(f"{pname} {back}")
                if cur["mtu"] != then["mtu"]:
                    ipr.link("set", index=cur["index"], mtu=then["mtu"])
                if cur["up"] != then["up"]:
                    ipr.link("set", index=cur["index"], state="up" if then["up"] else "down")
            for vname in undo.get("created_vlans", ()):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx(vname))
                done.append(f"VLAN interface {vname} removed")
            # the bridge itself
            if self.name not in links_then:
                if self.name in links_now:
                    ipr.link("del", index=links_now[self.name]["index"])
                    done.append(f"bridge {self.name} deleted")
            else:
                then = links_then[self.name]
                kw = {}
                for key in ATTRS:
                    value = then["bridge"].get(key)
                    if value is not None and value != (
                        links_now.get(self.name, {}).get("bridge") or {}
                    ).get(key):
                        _nla, name, kind = nl.BRIDGE_NLA[key]
                        kw[name] = nl.centiseconds(value) if kind == "timer" else int(value)
                bidx = idx(self.name)
                if kw:
                    ipr.link("set", index=bidx, kind="bridge", **kw)
                ipr.link(
                    "set",
                    index=bidx,
                    mtu=then["mtu"],
                    address=then["mac"],
                    state="up" if then["up"] else "down",
                )
                done.append(f"bridge {self.name} attributes")
                # the VLAN table of the ports that were already its ports
                entries = nl._vlan_entries(ipr)  # pylint: disable=protected-access
                vlans_restored = False
                for pname, then_vlans in sorted(undo.get("vlans_before", {}).items()):
                    pidx = idx(pname)
                    if pidx is None or (links_then.get(pname) or {}).get("master") != self.name:
                        continue
                    cur = dict(entries.get(pidx, []))
                    for vid in sorted(set(cur) - set(then_vlans)):
                        ipr.vlan_filter("del", index=pidx, vlan_info={"vid": vid})
                        vlans_restored = True
                    for vid, flags in sorted(then_vlans.items()):
                        if cur.get(vid) != flags:
                            ipr.vlan_filter(
                                "add", index=pidx, vlan_info={"vid": vid, "flags": flags}
                            )
                            vlans_restored = True
                if vlans_restored:
                    done.append("port VLANs")
            if _restore_addresses(ipr, first, touched, idx):
                done.append("addresses")
            if _restore_routes(ipr, first, idx):
                done.append("routes")
        if undo.get("persist_backup"):
            from salt_kvm import persist  # pylint: disable=import-outside-toplevel

            persist.restore(undo.get("persist_backup"))
            done.append("persisted files")
        _invalidate(self.session, self.netns)
        return "the host as it was (" + ", ".join(done) + ")" if done else "the host as it was"


def _restore_addresses(ipr, first, touched, idx):
    """Put back the global addresses of the ``touched`` links as in dump ``first``;
    whether any differed. ``idx(name)`` is a link's index now."""
    now = nl.dump(ipr)
    then_addrs = _global_addresses(first, touched)
    now_addrs = _global_addresses(now, touched)
    for akey in sorted(set(now_addrs) - set(then_addrs)):
        a = now_addrs[akey]
        with contextlib.suppress(Exception):
            ipr.addr(
                "del",
                index=idx(a["ifname"]),
                address=a["address"],
                prefixlen=a["prefixlen"],
            )
    for akey in sorted(set(then_addrs) - set(now_addrs)):
        a = then_addrs[akey]
        BridgeResource._add_addr(
            ipr, None, idx(a["ifname"]), a["cidr"], nodad=True, broadcast=a.get("broadcast")
        )
    return then_addrs != now_addrs


def _restore_routes(ipr, first, idx):
    """Put back the main table's routes (not those an address makes by itself) as in
    dump ``first``; whether any differed."""
    now = nl.dump(ipr)
    then_routes, now_routes = _static_routes(first), _static_routes(now)
    for rkey in set(now_routes) - set(then_routes):
        r = now_routes[rkey]
        with contextlib.suppress(Exception):
            kw = {"family": r["family"], "dst": _dst(r), "table": nl.RT_TABLE_MAIN}
            if r["via"]:
                kw["gateway"] = r["via"]
            if r["oif"] and idx(r["oif"]):
                kw["oif"] = idx(r["oif"])
            if r["metric"] is not None:
                kw["priority"] = r["metric"]
            ipr.route("del", **kw)
    for rkey in set(then_routes) - set(now_routes):
        r = then_routes[rkey]
        kw = {
            "family": r["family"],
            "dst": _dst(r),
            "table": nl.RT_TABLE_MAIN,
            "proto": r["proto"],
            "scope": r["scope"],
        }
        if r["via"]:
            kw["gateway"] = r["via"]
        if r["oif"]:
            kw["oif"] = idx(r["oif"])
        if r["metric"] is not None:
            kw["priority"] = r["metric"]
        if r["prefsrc"]:
            kw["prefsrc"] = r["prefsrc"]
        ipr.route("replace", **kw)
    return then_routes != now_routes


def _global_addresses(host, ifnames):
    """``{(ifname, cidr): address}`` of the global addresses of ``ifnames`` in dump ``host``."""
    return {
        (a["ifname"], a["cidr"]): a
        for a in host["addresses"]
        if a["ifname"] in ifnames and a["scope"] == 0
    }


def _static_routes(host):
    """``{key: route}`` of the main table's routes in dump ``host`` that no address made."""
    return {
        (r["family"], r["dst"], r["via"], r["oif"], r["metric"]): r
        for r in host["routes"]
        if r["proto"] != nl.RTPROT_KERNEL
    }


def _dst(route):
    if route["dst"] == "default":
        return "0.0.0.0/0" if route["family"] == socket.AF_INET else "::/0"
    return route["dst"]


def _route_text(route):
    text = route["dst"]
    if route.get("via"):
        text += f" via {route['via']}"
    return text


def bridge_present(
    session: Any,
    name: str,
    *,
    test: bool = False,
    netns: Optional[str] = None,
    root: Optional[str] = None,
    master: Optional[tuple[str, int]] = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """State ``kvm.bridge_present``: the bridge as declared (see the module docstring).

    ``master``: ``(host, port)`` of the Salt master; when the route to it goes
    through an uplink that moves, the default probe also connects to it.
    """
    try:
        resource = BridgeResource(session, name, kwargs, netns=netns, root=root, master=master)
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"bridge {name!r}: {exc}")
    if test:  # reads only: no lock
        return plan.ensure(name, resource, test=True)
    return _locked(
        session, netns, name, resource.what, lambda: plan.ensure(name, resource, test=False)
    )


def _locked(session, netns, name, what, run):
    """``run()`` (a state) under :func:`change_lock`; a lock timeout is the state's failure."""
    try:
        with change_lock(session, netns) as lock:
            ret = run()
            lock.changed = bool(ret["changes"]) or ret["result"] is False
            return ret
    except KvmError as exc:
        return plan.state_return(name, False, comment=f"{what}: {exc}")


def bridge_absent(
    session: Any,
    name: str,
    *,
    force: bool = False,
    test: bool = False,
    netns: Optional[str] = None,
    persist: Optional[str] = None,
    root: Optional[str] = None,
) -> dict[str, Any]:
    """State ``kvm.bridge_absent``: no bridge ``name``; refuses with VM taps unless ``force``."""
    try:
        schema.validate(schema.IFNAME, name, str(name))
        if persist is not None:
            schema.validate(schema.BRIDGE, {"persist": persist}, str(name))
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"bridge {name!r}: {exc}")
    what = f"bridge {name!r}"

    def exists():
        host = host_state(session, netns)
        link = host["links"].get(name)
        if link is None:
            return None
        if link["kind"] != "bridge":
            raise KvmError(f"{name!r} is a {link['kind'] or 'network device'}, not a bridge")
        view = _view(session, host, name, netns)
        return {"ports": [p["name"] for p in view["ports"]], "addresses": view["addresses"]}

    def guard(_current):
        _guard_absent(session, host_state(session, netns), name, force, netns)

    def remove(_current):
        _delete_link(netns, name, host_state(session, netns)["links"][name]["index"])
        _invalidate(session, netns)
        if persist and persist != "none":
            from salt_kvm import persist as persist_mod  # pylint: disable=import-outside-toplevel

            persist_mod.remove(
                persist if persist != "auto" else persist_mod.detect(root or "/"),
                name,
                root=root or "/",
            )

    if test:
        return plan.absent(name, what, exists, remove, test=True, guard=guard)
    return _locked(
        session,
        netns,
        name,
        what,
        lambda: plan.absent(name, what, exists, remove, test=False, guard=guard),
    )
