"""VMs, live: what a running VM takes without a restart, ``kvm.vm_attach`` / ``kvm.vm_detach``,
and the volumes a ``vm_present`` disk entry makes.

Live (applied to the running VM and kept in its definition): attaching a disk or NIC,
detaching one (its volume kept), a NIC's bridge or network and its link state, the
memory balloon up to ``max_memory``, vCPUs up to ``max_vcpus``. Everything else a
pillar change touches on a running VM (machine, CPU, type, boot, console, firmware,
graphics, the cloud-init seed, a NIC's model or kind, a disk's target, a CD-ROM, memory
or vCPUs above the running maximum) waits for a restart: written to the definition,
reported as pending.

Taking a device away needs the guest: it must answer the hot-unplug request (ACPI). A
guest without an OS never does; a detach is waited for :data:`DETACH_TIMEOUT` seconds
and, when the device is still there, reported (pending restart, or an error from
``kvm.vm_detach``) instead of hanging.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from typing import Any, Optional

from lxml import etree

from salt_kvm import depends, schema, units
from salt_kvm import storage as pools_mod
from salt_kvm import storage_volumes as vols_mod
from salt_kvm import vm as vm_mod
from salt_kvm.conn import Session, libvirt_caught, libvirt_errors
from salt_kvm.errors import InvalidInput, KvmError, NotFound
from salt_kvm.xml.base import parse

log = logging.getLogger(__name__)

AFFECT_LIVE = 1  # VIR_DOMAIN_AFFECT_LIVE
AFFECT_CONFIG = 2  # VIR_DOMAIN_AFFECT_CONFIG
#: seconds a live detach waits for the guest to release the device (libvirt's own 5 s included)
DETACH_TIMEOUT = 10.0


class Op:
    """One live change: ``kind`` (detach, update, attach, memory, vcpus), what it says in
    ``changes``, and what it needs."""

    def __init__(self, kind: str, text: str, **data: Any) -> None:
        self.kind, self.text, self.data = kind, text, data

    def __repr__(self) -> str:
        return f"<live {self.kind}: {self.text}>"


def pending_text(pending: list[str]) -> str:
    """The comment naming what only a restart applies."""
    return f"pending: {', '.join(pending)} (restart: true restarts it now)"


# --- planning -----------------------------------------------------------------------------


def _nic_label(el):
    mac, source = el.find("mac"), el.find("source")
    where = (
        ""
        if source is None
        else (
            f" on bridge {source.get('bridge')}"
            if el.get("type") == "bridge"
            else f" on network {source.get('network')}"
        )
    )
    return f"NIC {mac.get('address').lower() if mac is not None else '(new)'}{where}"


def _nic_view(el):
    source, model, link = el.find("source"), el.find("model"), el.find("link")
    return {
        "type": el.get("type"),
        # a running VM's network NIC names its network's bridge too: compare what its type names
        "source": None if source is None else source.get(el.get("type")),
        "model": model.get("type") if model is not None else None,
        "link": link.get("state", "up") if link is not None else "up",
    }


def _mac(el):
    mac = el.find("mac")
    return mac.get("address").lower() if mac is not None else None


def _disk_view(el):
    source, target = el.find("source"), el.find("target")
    return {
        "path": depends.source_path(source),
        "target": target.get("dev") if target is not None else None,
        "device": el.get("device", "disk"),
        "bus": target.get("bus") if target is not None else None,
    }


def _plan_nics(live, want, ops, pending):
    have = {_mac(el): el for el in live.findall("devices/interface") if _mac(el)}
    wanted = set()
    for index, el in enumerate(want.findall("devices/interface")):
        mac = _mac(el)
        if mac and mac in have:
            wanted.add(mac)
            old, new = _nic_view(have[mac]), _nic_view(el)
            if old["type"] != new["type"] or old["model"] != new["model"]:
                what = "kind" if old["type"] != new["type"] else "model"
                key = what if what == "model" else "type"
                pending.append(f"NIC {mac} {what} {old[key]} -> {new[key]}")
                continue
            said = []
            if old["source"] != new["source"]:
                said.append(f"{old['source']} -> {new['source']}")
            if old["link"] != new["link"]:
                said.append(f"link {new['link']}")
            if said:
                ops.append(Op("update", f"NIC {mac} {', '.join(said)}", element=el))
        else:
            ops.append(Op("attach-nic", f"attach {_nic_label(el)}", index=index, mac=mac))
    for mac, el in have.items():
        if mac not in wanted:
            ops.append(Op("detach", f"detach {_nic_label(el)}", element=el, nic=mac))


def _plan_disks(live, want, spec, ops, pending):
    have = {}
    for el in live.findall("devices/disk"):
        view = _disk_view(el)
        if view["path"]:
            have[view["path"]] = (el, view)
    used = {view["target"]: path for path, (_el, view) in have.items()}
    labels = [f"{d['pool']}/{d['volume']}" for d in spec.get("disks") or []]
    wanted = set()
    for index, el in enumerate(want.findall("devices/disk")):
        view = _disk_view(el)
        label = labels[index] if index < len(labels) else view["path"]
        wanted.add(view["path"])
        if view["path"] in have:
            old = have[view["path"]][1]
            if (old["target"], old["device"]) != (view["target"], view["device"]):
                pending.append(f"disk {label} as {view['target']} (now {old['target']})")
        elif view["device"] == "cdrom":
            pending.append(f"CD-ROM {label} (SATA takes no hotplug)")
        elif view["target"] in used:
            pending.append(
                f"disk {label} as {view['target']} "
                f"(the running VM has {used[view['target']]} there)"
            )
        else:
            ops.append(
                Op("attach-disk", f"attach disk {label} as {view['target']}", target=view["target"])
            )
    for path, (el, view) in have.items():
        if path in wanted:
            continue
        if view["device"] == "cdrom" or view["bus"] not in ("virtio", "scsi", "usb"):
            pending.append(f"detach {view['device']} {view['target']} ({path})")
        else:
            ops.append(
                Op(
                    "detach",
                    f"detach disk {view['target']} ({path})",
                    element=el,
                    target=view["target"],
                )
            )


def plan(
    live: Any, want: Any, spec: dict[str, Any], keys: Any, *, memory_changed: bool = False
) -> tuple[list[Op], list[str]]:
    """``(ops, pending)``: the live changes that take the running VM (``live``, its XML root) to
    the declared definition ``want``, for the modelled ``keys`` that changed; ``pending``
    describes what only a restart applies."""
    ops: list[Op] = []
    pending: list[str] = []
    have, new = vm_mod._modelled(live), vm_mod._modelled(want)  # pylint: disable=protected-access
    if "type" in keys and spec.get("type") and have["type"] != new["type"]:
        pending.append(f"type {have['type']} -> {new['type']}")
    if (
        "machine" in keys
        and spec.get("machine")
        and not vm_mod._same_machine(have["machine"], spec["machine"])
    ):  # pylint: disable=protected-access
        pending.append(f"machine {have['machine']} -> {spec['machine']}")
    if "cpu" in keys and spec.get("cpu"):
        pending.append(
            f"cpu {spec['cpu']}"
        )  # libvirt expands a running VM's CPU: only a restart tells
    for key in ("boot", "console", "firmware", "graphics", "cloud_init"):
        if key in keys and have.get(key) != new.get(key):
            pending.append(key)
    if ("max_memory" in keys or memory_changed) and have["max_memory"] != new["max_memory"]:
        pending.append(
            f"max_memory {units.human_size(have['max_memory'])} -> "
            f"{units.human_size(new['max_memory'])}"
        )
    if memory_changed:
        balloon = live.find("devices/memballoon")
        if new["memory"] > have["max_memory"]:
            pending.append(
                f"memory {units.human_size(new['memory'])} "
                f"(above the running maximum {units.human_size(have['max_memory'])})"
            )
        elif balloon is None or balloon.get("model") == "none":
            pending.append(
                f"memory {units.human_size(new['memory'])} (the VM has no balloon device)"
            )
        else:
            ops.append(
                Op(
                    "memory",
                    f"memory {units.human_size(new['memory'])}",
                    kib=-(-new["memory"] // 1024),
                )
            )
    if ("max_vcpus" in keys or "vcpus" in keys) and have["max_vcpus"] != new["max_vcpus"]:
        pending.append(f"max_vcpus {have['max_vcpus']} -> {new['max_vcpus']}")
    if "vcpus" in keys and have["vcpus"] != new["vcpus"]:
        if new["vcpus"] > have["max_vcpus"]:
            pending.append(f"vcpus {new['vcpus']} (above the running maximum {have['max_vcpus']})")
        else:
            ops.append(
                Op(
                    "vcpus",
                    f"vcpus {have['vcpus']} -> {new['vcpus']}",
                    count=new["vcpus"],
                    fewer=new["vcpus"] < have["vcpus"],
                )
            )
    if "nics" in keys:
        _plan_nics(live, want, ops, pending)
    if "disks" in keys:
        _plan_disks(live, want, spec, ops, pending)
    order = ("detach", "update", "attach-disk", "attach-nic", "memory", "vcpus")
    ops.sort(key=lambda op: order.index(op.kind))
    return ops, pending


# --- applying -----------------------------------------------------------------------------


def _bare(el):
    """A device element without the addresses and alias of another definition."""
    el = copy.deepcopy(el)
    for tag in ("address", "alias"):
        for node in el.findall(tag):
            el.remove(node)
    return etree.tostring(el, encoding="unicode")


def _present(dom, nic=None, target=None):
    root = parse(dom.XMLDesc(0))
    if nic:
        return any(_mac(el) == nic for el in root.findall("devices/interface"))
    return any(_disk_view(el)["target"] == target for el in root.findall("devices/disk"))


def _detach_live(dom, element, *, nic=None, target=None, timeout=None):
    """Ask the guest to release a device; ``None`` when it is gone, else why it is not."""
    timeout = DETACH_TIMEOUT if timeout is None else timeout
    end = time.monotonic() + timeout
    with libvirt_caught() as caught:
        dom.detachDeviceFlags(etree.tostring(element, encoding="unicode"), AFFECT_LIVE)
    if caught:
        if not _present(dom, nic, target):
            return None
        return f"libvirt refused the live detach: {caught.message}"
    while time.monotonic() < end:
        if not _present(dom, nic, target):
            return None
        time.sleep(0.25)
    if not _present(dom, nic, target):
        return None
    return f"the guest did not release it within {timeout:g}s (no answer to the hot-unplug request)"


def apply_ops(dom: Any, ops: list[Op], inactive: Any) -> list[tuple[Op, str]]:
    """Apply the live ``ops`` to ``dom`` (its persistent definition ``inactive`` already holds
    the declared one); ``[(op, why)]`` of the ops the guest did not complete."""
    unfinished: list[tuple[Op, str]] = []
    for op in ops:
        if op.kind == "detach":
            why = _detach_live(
                dom, op.data["element"], nic=op.data.get("nic"), target=op.data.get("target")
            )
            if why:
                unfinished.append((op, f"{op.text}: {why}"))
        elif op.kind == "update":
            with libvirt_errors(f"changing {op.text} live"):
                dom.updateDeviceFlags(_bare(op.data["element"]), AFFECT_LIVE)
        elif op.kind == "attach-nic":
            el = inactive.findall("devices/interface")[op.data["index"]]
            with libvirt_errors(f"attaching {_nic_label(el)} live"):
                dom.attachDeviceFlags(_bare(el), AFFECT_LIVE)
        elif op.kind == "attach-disk":
            el = next(
                d
                for d in inactive.findall("devices/disk")
                if _disk_view(d)["target"] == op.data["target"]
            )
            with libvirt_errors(f"attaching disk {op.data['target']} live"):
                dom.attachDeviceFlags(_bare(el), AFFECT_LIVE)
        elif op.kind == "memory":
            with libvirt_errors(f"setting the memory balloon to {op.text}"):
                dom.setMemoryFlags(op.data["kib"], AFFECT_LIVE)
        elif op.kind == "vcpus":
            with libvirt_caught() as caught:
                dom.setVcpusFlags(op.data["count"], AFFECT_LIVE)
            if caught:
                if not op.data["fewer"]:
                    raise KvmError(f"setting {op.text} live: {caught.message}")
                unfinished.append(
                    (op, f"{op.text}: the guest did not release the vCPUs ({caught.message})")
                )
    return unfinished


# --- volumes a disk entry makes -----------------------------------------------------------


def new_volumes(
    session: Session, vm: str, spec: dict[str, Any], *, test: bool = False
) -> list[dict[str, Any]]:
    """``[{index, disk, label}]``: the declared disks whose volume is missing and that say how to
    make it (``size`` or ``backing``). A pool that does not exist (yet) is left to the disk
    check."""
    out = []
    for index, disk in enumerate(spec.get("disks") or []):
        if not (disk.get("size") or disk.get("backing")) or disk.get("device") == "cdrom":
            continue
        try:
            entry = pools_mod.lookup_pool(session, disk["pool"])
        except NotFound:
            continue
        if not entry["active"] or disk["volume"] in vols_mod.volumes(session, disk["pool"]):
            continue
        how = (
            f"qcow2 on {disk['backing']}"
            if disk.get("backing")
            else f"{units.human_size(disk['size'])} {disk.get('format') or 'default format'}"
        )
        if disk.get("backing") and disk.get("size"):
            how += f", {units.human_size(disk['size'])}"
        out.append(
            {"index": index, "disk": disk, "label": f"{disk['pool']}/{disk['volume']} ({how})"}
        )
    return out


def make_volumes(
    session: Session,
    vm: str,
    spec: dict[str, Any],
    *,
    made: Optional[list[tuple[str, str]]] = None,
) -> None:
    """Make the missing volumes of :func:`new_volumes` with
    :func:`salt_kvm.storage_volumes.volume_create`; each one made is appended to ``made`` as
    ``(pool, volume)``."""
    made = [] if made is None else made
    for item in new_volumes(session, vm, spec):
        disk, where = item["disk"], f"{vm}:disks:{item['index']}"
        fmt = disk.get("format") or ("qcow2" if disk.get("backing") else None)
        try:
            vols_mod.volume_create(
                session,
                disk["pool"],
                disk["volume"],
                size=disk.get("size"),
                format=fmt,
                backing=disk.get("backing"),
            )
            made.append((disk["pool"], disk["volume"]))
        except InvalidInput as exc:
            field = exc.path.rsplit(":", 1)[-1] if exc.path else "volume"
            raise InvalidInput(f"{where}:{field}", exc.message) from None


# --- kvm.vm_attach / kvm.vm_detach ----------------------------------------------------------

_DISK_ARGS = ("pool", "volume")
_NIC_ARGS = ("bridge", "network", "mac", "model", "link")


def _flags(dom):
    active, persistent = bool(dom.isActive()), bool(dom.isPersistent())
    return (AFFECT_LIVE if active else 0) | (AFFECT_CONFIG if persistent else 0), active, persistent


def _only(device, given, allowed):
    for key, value in given.items():
        if value is not None and key not in allowed:
            raise InvalidInput(
                key, f"does not apply to device={device} (it takes {', '.join(allowed)})"
            )


def _random_mac(session):
    used = set()
    for dom in session.conn.listAllDomains(0):
        used.update(_mac(el) for el in parse(dom.XMLDesc(0)).findall("devices/interface"))
    while True:
        mac = "52:54:00:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))  # nosec B311 - not a secret
        if mac not in used:
            return mac


def _roots(dom):
    """The XML roots the change touches: the running one and the persistent one."""
    roots = [parse(dom.XMLDesc(0))]
    if dom.isActive() and dom.isPersistent():
        roots.append(parse(dom.XMLDesc(vm_mod.XML_INACTIVE)))
    return roots


def vm_attach(
    session: Session,
    name: str,
    *,
    device: Optional[str] = None,
    pool: Optional[str] = None,
    volume: Optional[str] = None,
    bridge: Optional[str] = None,
    network: Optional[str] = None,
    mac: Optional[str] = None,
    model: Optional[str] = None,
    link: Optional[str] = None,
) -> dict[str, Any]:
    """Attach a disk (``pool``, ``volume``) or a NIC (``bridge`` or ``network``, ``mac``, ``model``,
    ``link``) to a VM: live when it runs, and to its definition when it has one."""
    schema.validate(schema.Enum("disk", "nic"), device, "device")
    dom = vm_mod._domain(session, name)  # pylint: disable=protected-access
    given = {
        "pool": pool,
        "volume": volume,
        "bridge": bridge,
        "network": network,
        "mac": mac,
        "model": model,
        "link": link,
    }
    flags, active, persistent = _flags(dom)
    roots = _roots(dom)
    if device == "disk":
        _only(device, given, _DISK_ARGS)
        disk = schema.validate(
            schema.VM_DISK,
            {k: v for k, v in given.items() if k in _DISK_ARGS and v is not None},
            "disk",
        )
        try:
            kind, path, fmt = vm_mod._resolve_disk(session, name, "new", disk)  # pylint: disable=protected-access
        except InvalidInput as exc:
            raise InvalidInput(exc.path.rsplit(":", 1)[-1], exc.message) from None
        used = set()
        for root in roots:
            for el in root.findall("devices/disk"):
                view = _disk_view(el)
                used.add(view["target"])
                if view["path"] == path:
                    raise InvalidInput(
                        "volume", f"{pool}/{volume} is already disk {view['target']} of VM '{name}'"
                    )
        target = next(
            f"vd{chr(c)}" for c in range(ord("a"), ord("z") + 1) if f"vd{chr(c)}" not in used
        )
        try:
            vm_mod.guard_new_disks(
                session,
                name,
                {"disks": [disk]},
                current_xmls=[etree.tostring(root, encoding="unicode") for root in roots],
                targets=[target],
            )
        except InvalidInput as exc:
            raise InvalidInput("volume", exc.message) from None
        element = vm_mod._disk_element(kind, path, fmt, target, shareable=disk.get("shareable"))  # pylint: disable=protected-access
        out = {"device": "disk", "target": target, "pool": pool, "volume": volume, "path": path}
    else:
        _only(device, given, _NIC_ARGS)
        nic = schema.validate(
            schema.VM_NIC,
            {k: v for k, v in given.items() if k in _NIC_ARGS and v is not None},
            "nic",
        )
        nic["mac"] = (nic.get("mac") or _random_mac(session)).lower()
        for root in roots:
            if any(_mac(el) == nic["mac"] for el in root.findall("devices/interface")):
                raise InvalidInput("mac", f"VM '{name}' already has a NIC with MAC {nic['mac']}")
        element = vm_mod._nic_element(nic)  # pylint: disable=protected-access
        out = {
            "device": "nic",
            "mac": nic["mac"],
            "bridge": nic.get("bridge"),
            "network": nic.get("network"),
            "model": nic.get("model") or "virtio",
        }
    with libvirt_errors(f"attaching a {device} to VM '{name}'"):
        dom.attachDeviceFlags(etree.tostring(element, encoding="unicode"), flags)
    out.update(live=active, persistent=persistent)
    return out


def vm_detach(
    session: Session,
    name: str,
    *,
    device: Optional[str] = None,
    target: Optional[str] = None,
    pool: Optional[str] = None,
    volume: Optional[str] = None,
    mac: Optional[str] = None,
    timeout: Any = None,
) -> dict[str, Any]:
    """Detach a disk (by ``target``, or ``pool`` and ``volume``; the volume is kept) or a NIC (by
    ``mac``) from a VM: live when it runs (waiting ``timeout`` seconds for the guest to release
    it), and from its definition when it has one."""
    schema.validate(schema.Enum("disk", "nic"), device, "device")
    timeout = (
        DETACH_TIMEOUT
        if timeout is None
        else schema.validate(schema.Duration(), timeout, "timeout")
    )
    dom = vm_mod._domain(session, name)  # pylint: disable=protected-access
    given = {"target": target, "pool": pool, "volume": volume, "mac": mac}
    if device == "disk":
        _only(device, given, ("target", "pool", "volume"))
        if target is None and (pool is None or volume is None):
            raise InvalidInput("target", "give the disk's target (vdb) or its pool and volume")
        path = None
        if target is None:
            try:
                path = vm_mod._resolve_disk(
                    session, name, "detach", {"pool": pool, "volume": volume}
                )[1]  # pylint: disable=protected-access
            except InvalidInput as exc:
                raise InvalidInput(exc.path.rsplit(":", 1)[-1], exc.message) from None

        def match(el):
            view = _disk_view(el)
            return view["target"] == target if target else view["path"] == path

        tag, what = "devices/disk", f"disk {target or f'{pool}/{volume}'}"
        field = "target" if target else "volume"
    else:
        _only(device, given, ("mac",))
        if mac is None:
            raise InvalidInput("mac", "is required with device=nic")
        mac = schema.validate(schema.Mac(), mac, "mac").lower()

        def match(el):
            return _mac(el) == mac

        tag, what, field = "devices/interface", f"NIC {mac}", "mac"
    active, persistent = bool(dom.isActive()), bool(dom.isPersistent())
    live_el = (
        next((el for el in parse(dom.XMLDesc(0)).findall(tag) if match(el)), None)
        if active
        else None
    )
    conf_el = (
        next((el for el in parse(dom.XMLDesc(vm_mod.XML_INACTIVE)).findall(tag) if match(el)), None)
        if persistent
        else None
    )
    if live_el is None and conf_el is None:
        raise InvalidInput(field, f"VM '{name}' has no {what}")
    out = {"device": device, "live": live_el is not None, "persistent": conf_el is not None}
    if conf_el is not None:
        with libvirt_errors(f"detaching {what} from the definition of VM '{name}'"):
            dom.detachDeviceFlags(etree.tostring(conf_el, encoding="unicode"), AFFECT_CONFIG)
    if live_el is not None:
        view = _disk_view(live_el) if device == "disk" else None
        why = _detach_live(
            dom,
            live_el,
            nic=mac if device == "nic" else None,
            target=view["target"] if view else None,
            timeout=float(timeout),
        )
        if why:
            kept = (
                "; it is gone from the definition and leaves at the next restart"
                if conf_el is not None
                else ""
            )
            raise KvmError(f"VM '{name}': {what} is still attached: {why}{kept}")
    out.update(
        {"target": _disk_view(live_el if live_el is not None else conf_el)["target"]}
        if device == "disk"
        else {"mac": mac}
    )
    return out
