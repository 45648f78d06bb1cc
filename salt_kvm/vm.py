"""VMs: the ``kvm.vm_*`` functions and the ``vm_present`` / ``vm_absent`` states.

A VM is declared with the keys of a ``kvm:vms`` pillar entry: ``type``,
``memory``, ``max_memory``, ``vcpus``, ``max_vcpus``, ``cpu``, ``machine``, ``disks`` (volumes of
pools),
``nics`` (on host bridges or libvirt networks), ``boot`` (direct kernel boot),
``console`` (the serial console written to a file), ``autostart``, ``state``
and ``restart``.

The definition is **edited in place**: only what the pillar models changes
(memory, vCPUs, CPU mode, machine, the kernel boot, the disks and NICs, the
serial console); every other element (a hand-added controller, channel or
watchdog, ``<metadata>``, libvirt's own defaults) is kept. Disks and NICs are
the pillar's: a disk removed from the pillar is detached, its volume kept.

What a running VM can take live (a disk or NIC attached or detached, a NIC's
bridge or network and link state, memory up to ``max_memory``, vCPUs up to
``max_vcpus``) is applied live and written to the definition
(:mod:`salt_kvm.vm_live`). A change that needs a restart (machine, CPU, type,
boot, a NIC's model, a disk's target, memory or vCPUs above the maximum) is
written to the persistent definition and reported as **pending restart**
(result True) unless ``restart: true``, which shuts the VM down gracefully
(ACPI, with a timeout) and starts it again.

A disk entry with ``size`` or ``backing`` makes its volume when it is missing
(:func:`salt_kvm.storage_volumes.volume_create`); an existing volume is never
re-created or resized.

Volumes are never deleted by implication: ``vm_absent`` / ``kvm.vm_undefine``
keep them unless ``purge``, and even then a volume another VM uses, or that
another image is built on, stays (:mod:`salt_kvm.depends`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
from typing import Any, Optional

from lxml import etree

from salt_kvm import cloudinit, depends, plan, schema, units, vm_live
from salt_kvm import storage as pools_mod
from salt_kvm import storage_volumes as vols_mod
from salt_kvm import vm_platform as platform
from salt_kvm.conn import DOMAIN_STATES, libvirt, libvirt_errors, lookup_domain
from salt_kvm.errors import InvalidInput, KvmError, NotFound
from salt_kvm.plan import Changes, Plan, Undo
from salt_kvm.xml.base import parse

log = logging.getLogger(__name__)

#: libvirt's domain state numbers, by virsh's names
STATES = DOMAIN_STATES
#: where a VM's serial console is written (``console: {log: true}``)
CONSOLE_DIR = "/var/log/libvirt/qemu"
SHUTDOWN_TIMEOUT = 120
XML_INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE
XML_SECURE = 1  # VIR_DOMAIN_XML_SECURE: with the graphics passwords (compared, never shown)
UNDEFINE_FLAGS = 1 | 2 | 4  # MANAGED_SAVE | SNAPSHOTS_METADATA | NVRAM


def console_path(name: str) -> str:
    """Where the serial console of VM ``name`` is written (``console: {log: true}``)."""
    return os.path.join(CONSOLE_DIR, f"{name}.console.log")


def default_type() -> str:
    """``kvm`` where /dev/kvm exists, else ``qemu`` (software emulation)."""
    return "kvm" if os.path.exists("/dev/kvm") else "qemu"


# --- reading ---------------------------------------------------------------------------


def _domain(session, name):
    schema.validate(schema.OBJNAME, name, "name")
    return lookup_domain(session, name)


def _state(dom):
    return STATES.get(dom.info()[0], "unknown")


def _volume_of(session, path):
    """``(pool, volume)`` holding the file or device at ``path`` (by identity), or ``(None,
    None)``."""
    want = depends.identity(path)
    for pname, entry in pools_mod.pools(session).items():
        if not entry["active"]:
            continue
        with contextlib.suppress(KvmError):
            for vname in vols_mod.volumes(session, pname):
                if vols_mod.identity_of(session, pname, vname) == want:
                    return pname, vname
    return None, None


def _addresses(dom):
    """``{mac: [ip, ...]}`` where libvirt knows them (DHCP leases of its networks, or the agent)."""
    out = {}
    for source in (
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
    ):
        with contextlib.suppress(libvirt.libvirtError):
            for iface in (dom.interfaceAddresses(source, 0) or {}).values():
                mac = (iface.get("hwaddr") or "").lower()
                for addr in iface.get("addrs") or []:
                    out.setdefault(mac, []).append(addr["addr"])
            if out:
                break
    return out


def _describe(session, dom, root):
    state = _state(dom)
    disks = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        path = depends.source_path(source)
        pool, volume = (
            (source.get("pool"), source.get("volume"))
            if source is not None and source.get("volume")
            else _volume_of(session, path)
            if path
            else (None, None)
        )
        target = disk.find("target")
        disks.append(
            {
                "target": target.get("dev") if target is not None else None,
                "device": disk.get("device", "disk"),
                "path": path,
                "pool": pool,
                "volume": volume,
            }
        )
    addresses = _addresses(dom) if state == "running" else {}
    nics = []
    for iface in root.findall("devices/interface"):
        source, mac, model = iface.find("source"), iface.find("mac"), iface.find("model")
        mac = mac.get("address").lower() if mac is not None else None
        nics.append(
            {
                "type": iface.get("type"),
                "bridge": source.get("bridge")
                if source is not None and iface.get("type") == "bridge"
                else None,
                "network": source.get("network")
                if source is not None and iface.get("type") == "network"
                else None,
                "mac": mac,
                "model": model.get("type") if model is not None else None,
                "ip": addresses.get(mac, []),
            }
        )
    memory = root.find("memory")
    vcpu = root.find("vcpu")
    return {
        "name": dom.name(),
        "uuid": dom.UUIDString(),
        "state": state,
        "autostart": bool(dom.autostart()),
        "persistent": bool(dom.isPersistent()),
        "type": root.get("type"),
        "vcpus": _vcpus(vcpu),
        "max_vcpus": int(root.findtext("vcpu") or 0),
        "memory": _bytes(root.find("currentMemory")) or _bytes(memory),
        "max_memory": _bytes(memory),
        "disks": disks,
        "nics": nics,
        "console": _console_file(root),
        "firmware": platform.firmware_of(root),
        "graphics": platform.shown(platform.graphics_of(root)),
        "cloud_init": _seed_of(root),
    }


def _seed_of(root):
    """The path of the VM's cloud-init seed CD-ROM, or None."""
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        if source is not None and cloudinit.is_seed(source.get("file")):
            return source.get("file")
    return None


def _bytes(node):
    """A libvirt memory element in bytes (libvirt writes KiB unless a unit says otherwise)."""
    if node is None or not (node.text or "").strip():
        return None
    factor = {
        "b": 1,
        "bytes": 1,
        "k": 1024,
        "kib": 1024,
        "m": 1024**2,
        "mib": 1024**2,
        "g": 1024**3,
        "gib": 1024**3,
    }
    return int(node.text) * factor.get(node.get("unit", "KiB").lower(), 1024)


def _vcpus(node):
    """The vCPUs a ``<vcpu current=N>MAX</vcpu>`` element gives the VM now."""
    if node is None:
        return 0
    return int(node.get("current") or node.text or 0)


def _console_file(root):
    for serial in root.findall("devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None:
            return source.get("path")
    return None


def vm_list(session: Any) -> dict[str, dict[str, Any]]:
    """``{name: {state, autostart, vcpus, memory, disks, nics, ...}}`` of every VM."""
    out = {}
    with libvirt_errors("listing VMs"):
        doms = session.conn.listAllDomains(0)
    for dom in doms:
        with contextlib.suppress(libvirt.libvirtError):
            out[dom.name()] = _describe(session, dom, parse(dom.XMLDesc(XML_SECURE)))
    return dict(sorted(out.items()))


def vm_show(session: Any, name: str) -> dict[str, Any]:
    """One VM: as :func:`vm_list` shows it, with its persistent definition's differences pending."""
    dom = _domain(session, name)
    with libvirt_errors(f"VM '{name}'"):
        return _describe(session, dom, parse(dom.XMLDesc(XML_SECURE)))


# --- the declared definition -----------------------------------------------------------


def _resolve_disk(session, vm, index, disk, create=False):
    """``(type, path, format)`` of a declared disk's volume."""
    pool, volume = disk["pool"], disk["volume"]
    where = f"{vm}:disks:{index}"
    try:
        entry = pools_mod.lookup_pool(session, pool)
    except NotFound:
        raise InvalidInput(f"{where}:pool", f"pool '{pool}' does not exist") from None
    if not entry["active"]:
        raise KvmError(f"{where}: pool '{pool}' is not running")
    vols = vols_mod.volumes(session, pool)
    from salt_kvm.xml import storage as sxml  # pylint: disable=import-outside-toplevel

    if volume not in vols:
        if create and (disk.get("size") or disk.get("backing")):
            return _predicted_volume(session, where, disk)
        raise InvalidInput(
            f"{where}:volume",
            f"volume '{volume}' does not exist in pool '{pool}' (declare it under kvm:pools, give "
            "size or backing, or create it)",
        )
    model = sxml.Volume(vols[volume]["xml"])
    if disk.get("size") and (model.capacity or 0) < disk["size"]:
        raise InvalidInput(
            f"{where}:size",
            f"volume {pool}/{volume} has {units.human_size(model.capacity or 0)}, less than the "
            f"declared {units.human_size(disk['size'])}: "
            "a VM never resizes a volume (grow it with kvm.volume_resize, or declare it under "
            f"kvm:pools:{pool}:volumes)",
        )
    path = model.path
    kind = "block" if path and path.startswith("/dev/") else "file"
    fmt = model.format or "raw"
    return (
        kind,
        path,
        "raw" if fmt == "iso" else fmt,
    )  # libvirt calls an ISO image's format iso; QEMU reads it raw


def _own_disks(xmls):
    """``{target: [path of the disk there, and its backing chain]}`` of the VM's definitions
    (inactive, live)."""
    out = {}
    for xml in xmls:
        if not xml:
            continue
        for disk in parse(xml).findall("devices/disk"):
            source = disk.find("source")
            path = depends.source_path(source)
            if path:
                out.setdefault(_disk_target(disk), []).extend(
                    [path] + (depends.chain(path) if path.startswith("/") else [])
                )
    return out


def guard_new_disks(
    session: Any,
    name: str,
    spec: dict[str, Any],
    *,
    current_xmls: Any = (),
    targets: Optional[list[str]] = None,
) -> None:
    """Refuse a writable disk the VM does not have yet when another VM uses its volume (two
    writers corrupt it; ``shareable: true`` declares a disk meant for that, raw only) or
    when another image is built on it (a write to a base image corrupts every child). The
    VM's own disk on top of the volume at the same target (an external snapshot's overlay)
    is no other image."""
    own = _own_disks(current_xmls)
    tops = {depends.identity(paths[0]) for paths in own.values()}
    disks = spec.get("disks") or []
    index = None
    for i, (disk, target) in enumerate(zip(disks, targets or _targets(disks))):
        if disk.get("device") == "cdrom":
            continue  # read-only
        try:
            _kind, path, _fmt = _resolve_disk(session, name, i, disk)
        except KvmError:
            continue  # a volume still to be made is nobody else's
        ident = depends.identity(path)
        if ident in tops:
            continue  # already one of its disks
        index = index or depends.scan(session)
        where = f"{name}:disks:{i}:volume"
        users, children = depends.in_use(
            index, ident, exclude_images=own.get(target, []), owner=name
        )
        if users and not disk.get("shareable"):
            raise InvalidInput(
                where,
                f"volume {disk['pool']}/{disk['volume']} is a disk of VM {', '.join(users)}: a "
                "second VM writing to it would corrupt it (shareable: true for a disk meant to "
                "be shared)",
            )
        if children:
            raise InvalidInput(
                where,
                f"volume {disk['pool']}/{disk['volume']} is the backing file of "
                f"{', '.join(children)}: a VM writing to it would corrupt them (give the VM a "
                f"copy-on-write child: backing: {disk['volume']})",
            )


def _predicted_volume(session, where, disk):
    """``(type, path, format)`` the volume a disk entry makes will have (it does not exist yet)."""
    pool, volume = disk["pool"], disk["volume"]
    model = vols_mod._pool_model(session, pool)  # pylint: disable=protected-access
    if disk.get("backing") and disk["backing"] not in vols_mod.volumes(session, pool):
        raise InvalidInput(
            f"{where}:backing", f"volume '{disk['backing']}' does not exist in pool '{pool}'"
        )
    fmt = disk.get("format") or ("qcow2" if model.type in vols_mod.FILE_POOLS else "raw")
    path = os.path.join(model.target or "", volume) if model.type in vols_mod.FILE_POOLS else None
    if path is None:
        raise InvalidInput(
            f"{where}:pool",
            f"a VM disk makes volumes in file pools only, not in a {model.type} pool (declare the "
            "volume under kvm:pools)",
        )
    return ("block" if path.startswith("/dev/") else "file"), path, fmt


def _targets(disks):
    """Target device names: virtio disks vda, vdb...; CD-ROMs sda, sdb... on SATA."""
    counters, out = {"vd": 0, "sd": 0}, []
    for disk in disks:
        prefix = "sd" if disk.get("device") == "cdrom" else "vd"
        out.append(prefix + chr(ord("a") + counters[prefix]))
        counters[prefix] += 1
    return out


def _disk_element(kind, path, fmt, target, device="disk", shareable=False):
    disk = etree.Element("disk", type=kind, device=device)
    etree.SubElement(disk, "driver", name="qemu", type=fmt)
    etree.SubElement(disk, "source", **({"file": path} if kind == "file" else {"dev": path}))
    etree.SubElement(disk, "target", dev=target, bus="sata" if device == "cdrom" else "virtio")
    if device == "cdrom":
        etree.SubElement(disk, "readonly")
    elif shareable:
        etree.SubElement(disk, "shareable")
    return disk


def _nic_element(nic):
    kind = "bridge" if nic.get("bridge") else "network"
    iface = etree.Element("interface", type=kind)
    if nic.get("mac"):
        etree.SubElement(iface, "mac", address=nic["mac"].lower())
    etree.SubElement(iface, "source", **{kind: nic.get("bridge") or nic.get("network")})
    etree.SubElement(iface, "model", type=nic.get("model") or "virtio")
    if nic.get("link") == "down":
        etree.SubElement(iface, "link", state="down")
    return iface


def _new_domain(name, spec):
    root = etree.Element("domain", type=spec.get("type") or default_type())
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "memory", unit="KiB")
    etree.SubElement(root, "vcpu")
    os_el = etree.SubElement(root, "os")
    etree.SubElement(os_el, "type", arch="x86_64").text = "hvm"
    etree.SubElement(root, "features").append(etree.Element("acpi"))
    for event, action in (
        ("on_poweroff", "destroy"),
        ("on_reboot", "restart"),
        ("on_crash", "destroy"),
    ):
        etree.SubElement(root, event).text = action
    devices = etree.SubElement(root, "devices")
    etree.SubElement(devices, "memballoon", model="virtio")
    return root


def _set_child_text(parent, tag, text, before=None, **attrs):
    node = parent.find(tag)
    if text is None:
        if node is not None:
            parent.remove(node)
        return
    if node is None:
        node = etree.Element(tag)
        anchor = parent.find(before) if before else None
        if anchor is not None:
            anchor.addprevious(node)
        else:
            parent.append(node)
    node.text = str(text)
    for key, value in attrs.items():
        node.set(key, value)


def declared(
    session: Any, name: str, spec: dict[str, Any], *, current_xml: Optional[str] = None
) -> Any:
    """The declared definition: ``current_xml`` (the persistent one) edited in place,
    or a new one. Returns the lxml root."""
    root = parse(current_xml) if current_xml else _new_domain(name, spec)
    kib = str(-(-int(spec["memory"]) // 1024))
    _set_child_text(
        root, "memory", -(-int(spec.get("max_memory") or spec["memory"]) // 1024), unit="KiB"
    )
    _set_child_text(root, "currentMemory", kib, before="vcpu", unit="KiB")
    _set_vcpus(root, spec["vcpus"], spec.get("max_vcpus") or spec["vcpus"])
    if spec.get("type"):
        root.set("type", spec["type"])
    os_el = root.find("os")
    if spec.get("machine") and not _same_machine(
        os_el.find("type").get("machine"), spec["machine"]
    ):
        os_el.find("type").set("machine", spec["machine"])
    boot = spec.get("boot") or {}
    for key in ("kernel", "initrd", "cmdline"):
        _set_child_text(os_el, key, boot.get(key))
    if boot:
        for node in os_el.findall("boot"):
            os_el.remove(node)
    elif os_el.find("boot") is None and os_el.find("kernel") is None:
        etree.SubElement(os_el, "boot", dev="hd")
    cpu = root.find("cpu")
    if spec.get("cpu"):
        if cpu is not None:
            root.remove(cpu)
        cpu = etree.Element("cpu")
        if spec["cpu"] in ("host-model", "host-passthrough"):
            cpu.set("mode", spec["cpu"])
        else:
            cpu.set("mode", "custom")
            etree.SubElement(cpu, "model", fallback="allow").text = spec["cpu"]
        root.find("os").addnext(cpu)
    devices = root.find("devices")
    current_disks = {_disk_target(node): node for node in devices.findall("disk")}
    # disks and NICs are the pillar's; the rest of <devices> is kept
    for node in devices.findall("disk") + devices.findall("interface"):
        devices.remove(node)
    anchor = devices[0] if len(devices) else None
    disks = spec.get("disks") or []
    for index, (disk, target) in enumerate(zip(disks, _targets(disks))):
        kind, path, fmt = _resolve_disk(session, name, index, disk, create=True)
        element = _on_top_of(current_disks.get(target), path) or _disk_element(
            kind, path, fmt, target, disk.get("device", "disk"), disk.get("shareable")
        )
        if anchor is not None:
            anchor.addprevious(element)
        else:
            devices.append(element)
    if spec.get("cloud_init"):
        # the seed: a read-only SATA CD-ROM after the pillar's own CD-ROMs
        target = _targets(disks + [{"device": "cdrom"}])[-1]
        element = _disk_element("file", cloudinit.seed_path(name), "raw", target, "cdrom")
        if anchor is not None:
            anchor.addprevious(element)
        else:
            devices.append(element)
    for nic in spec.get("nics") or []:
        element = _nic_element(nic)
        if anchor is not None:
            anchor.addprevious(element)
        else:
            devices.append(element)
    _set_console(devices, name, (spec.get("console") or {}).get("log"))
    platform.set_firmware(root, name, spec.get("firmware"))
    platform.set_graphics(root, spec.get("graphics"))
    return root


def _disk_target(disk):
    target = disk.find("target")
    return target.get("dev") if target is not None else None


def _on_top_of(current, path):
    """The VM's current disk element when it is the declared volume ``path`` built upon: an
    external snapshot's overlay (``web01-vda.nightly.qcow2`` on ``web01.qcow2``) has the
    declared volume in its backing chain. Writes since the snapshot live in the overlay,
    so the disk stays as it is (going back to ``path`` would drop them); None otherwise."""
    if current is None or current.get("device", "disk") != "disk":
        return None
    source = current.find("source")
    have = depends.source_path(source)
    if not have or not path or have == path:
        return None
    want = depends.identity(path)
    if depends.identity(have) == want or any(
        depends.identity(below) == want for below in depends.chain(have)
    ):
        return copy.deepcopy(current)
    return None


def _set_vcpus(root, current, maximum):
    """``<vcpu current=N>MAX</vcpu>``; a per-vCPU ``<vcpus>`` list that no longer fits is
    dropped."""
    node = root.find("vcpu")
    old = (_vcpus(node), int(node.text or 0)) if node is not None else None
    _set_child_text(root, "vcpu", maximum)
    node = root.find("vcpu")
    if int(current) < int(maximum):
        node.set("current", str(current))
    elif "current" in node.attrib:
        del node.attrib["current"]
    listing = root.find("vcpus")
    if listing is not None and old != (int(current), int(maximum)):
        root.remove(listing)


def _set_console(devices, name, log_to_file):
    for serial in devices.findall("serial"):
        source = serial.find("source")
        if (
            serial.get("type") == "file"
            and source is not None
            and source.get("path") == console_path(name)
        ):
            devices.remove(serial)
    if log_to_file:
        serial = etree.SubElement(devices, "serial", type="file")
        etree.SubElement(serial, "source", path=console_path(name), append="on")
        etree.SubElement(serial, "target", port="0")


# --- comparing what the pillar models -----------------------------------------------------


def _modelled(root):
    """The parts of a definition the pillar models, as comparable values."""
    os_el = root.find("os")
    cpu = root.find("cpu")
    memory = root.find("memory")
    disks = []
    for disk in root.findall("devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        path = depends.source_path(source)
        if cloudinit.is_seed(path):
            continue  # modelled as cloud_init
        entry = {
            "path": path,
            "device": disk.get("device", "disk"),
            "target": target.get("dev") if target is not None else None,
        }
        if disk.find("shareable") is not None:
            entry["shareable"] = True
        disks.append(entry)
    nics = []
    for iface in root.findall("devices/interface"):
        source, mac, model = iface.find("source"), iface.find("mac"), iface.find("model")
        link = iface.find("link")
        nics.append(
            {
                "source": None
                if source is None
                else (source.get("bridge") or source.get("network")),
                "mac": mac.get("address").lower() if mac is not None else None,
                "model": model.get("type") if model is not None else None,
                "link": link.get("state", "up") if link is not None else "up",
            }
        )
    return {
        "type": root.get("type"),
        "memory": _bytes(root.find("currentMemory")) or _bytes(memory),
        "max_memory": _bytes(memory),
        "vcpus": _vcpus(root.find("vcpu")),
        "max_vcpus": int(root.findtext("vcpu") or 0),
        "cpu": None
        if cpu is None
        else (cpu.get("mode") if cpu.get("mode") != "custom" else cpu.findtext("model")),
        "machine": os_el.find("type").get("machine"),
        "boot": {
            k: os_el.findtext(k) for k in ("kernel", "initrd", "cmdline") if os_el.findtext(k)
        },
        "disks": disks,
        "nics": nics,
        "console": _console_file(root),
        "firmware": platform.firmware_of(root),
        "graphics": platform.graphics_of(root),
        "cloud_init": _seed_of(root),
    }


#: what the pillar models (a running VM: :func:`salt_kvm.vm_live.plan` says what changes live)
KEYS = (
    "type",
    "memory",
    "max_memory",
    "vcpus",
    "max_vcpus",
    "cpu",
    "machine",
    "boot",
    "disks",
    "nics",
    "console",
    "firmware",
    "graphics",
    "cloud_init",
)

#: what the changes of a new VM show of its declaration
NEW_KEYS = (
    "type",
    "memory",
    "max_memory",
    "vcpus",
    "max_vcpus",
    "cpu",
    "machine",
    "firmware",
    "disks",
    "nics",
    "boot",
    "console",
)


def _same_machine(have, want):
    """libvirt stores ``pc`` as ``pc-i440fx-7.2`` and ``q35`` as ``pc-q35-7.2``."""
    if not want or have == want:
        return True
    alias = {"pc": "pc-i440fx-", "q35": "pc-q35-"}.get(want, want + "-")
    return bool(have) and have.startswith(alias)


def _without_undeclared_macs(nics, declared_macs):
    """The NICs with the MAC only where the pillar declares one (by position)."""
    return [
        dict(n, mac=n["mac"] if i < len(declared_macs) and declared_macs[i] else None)
        for i, n in enumerate(nics)
    ]


def _compare(have, want, spec, keys=KEYS):
    """``{key: {old, new}}`` of the modelled parts that differ (undeclared keys and MACs
    ignored)."""
    changes = {}
    for key in keys:
        if key in ("type", "cpu", "machine", "firmware", "graphics") and not spec.get(key):
            continue
        if key == "machine" and _same_machine(have[key], spec["machine"]):
            continue
        if key == "nics":
            declared_macs = [bool(n.get("mac")) for n in spec.get("nics") or []]
            if _without_undeclared_macs(have["nics"], declared_macs) != _without_undeclared_macs(
                want["nics"], declared_macs
            ):
                changes["nics"] = {"old": have["nics"], "new": want["nics"]}
            continue
        if have[key] != want[key]:
            changes[key] = {"old": have[key], "new": want[key]}
    return changes


def _keep_macs(root, current_root, spec):
    """NICs declared without a MAC keep the MAC libvirt gave them (by position)."""
    old = current_root.findall("devices/interface")
    for index, (iface, nic) in enumerate(
        zip(root.findall("devices/interface"), spec.get("nics") or [])
    ):
        if not nic.get("mac") and index < len(old) and old[index].find("mac") is not None:
            iface.insert(0, etree.Element("mac", address=old[index].find("mac").get("address")))


# --- execution functions -------------------------------------------------------------------


def vm_define(session: Any, name: str, **spec: Any) -> dict[str, Any]:
    """Define (or redefine in place) a VM from a pillar-style spec (making the volumes its disk
    entries give ``size`` or ``backing`` for); its description."""
    spec = schema.validate_args(schema.VM, name, spec, name_field=schema.OBJNAME)
    current = live = None
    with contextlib.suppress(NotFound):
        dom = _domain(session, name)
        current = dom.XMLDesc(XML_INACTIVE | XML_SECURE)
        live = dom.XMLDesc(0) if dom.isActive() else None
    guard_new_disks(session, name, spec, current_xmls=(current, live))
    vm_live.make_volumes(session, name, spec)
    root = declared(session, name, spec, current_xml=current)
    if current:
        _keep_macs(root, parse(current), spec)
    if spec.get("cloud_init"):
        cloudinit.ensure(name, spec["cloud_init"])
    with libvirt_errors(f"defining VM '{name}'"):
        dom = session.conn.defineXML(etree.tostring(root, encoding="unicode"))
    if spec.get("autostart") is not None:
        with libvirt_errors(f"VM '{name}'"):
            dom.setAutostart(1 if spec["autostart"] else 0)
    return vm_show(session, name)


def vm_start(session: Any, name: str) -> bool:
    """Start a VM (resume a paused one); True."""
    dom = _domain(session, name)
    with libvirt_errors(f"starting VM '{name}'"):
        state = _state(dom)
        if state == "paused":
            dom.resume()
        elif state not in ("running", "blocked"):
            dom.create()
    return True


def _wait_off(dom, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not dom.isActive():
            return True
        time.sleep(0.25)
    return not dom.isActive()


def vm_shutdown(
    session: Any, name: str, *, timeout: Any = SHUTDOWN_TIMEOUT, force: bool = False
) -> bool:
    """Shut a VM down by ACPI and wait ``timeout`` seconds; then power it off only with
    ``force``."""
    timeout = (
        schema.validate(schema.Duration(), timeout, "timeout")
        if isinstance(timeout, str)
        else timeout
    )
    dom = _domain(session, name)
    with libvirt_errors(f"shutting down VM '{name}'"):
        if not dom.isActive():
            return True
        dom.shutdown()
        if _wait_off(dom, float(timeout)):
            return True
        if not force:
            raise KvmError(
                f"VM '{name}' did not shut down within {timeout}s (its guest ignored ACPI); "
                "force=True powers it off"
            )
        dom.destroy()
    return True


def vm_stop(session: Any, name: str) -> bool:
    """Power a VM off at once (like pulling the plug); True."""
    dom = _domain(session, name)
    with libvirt_errors(f"stopping VM '{name}'"):
        if dom.isActive():
            dom.destroy()
    return True


def vm_reboot(session: Any, name: str) -> bool:
    """Ask a running VM to reboot (ACPI); True."""
    dom = _domain(session, name)
    with libvirt_errors(f"rebooting VM '{name}'"):
        if not dom.isActive():
            raise KvmError(f"VM '{name}' is not running")
        dom.reboot(0)
    return True


def vm_autostart(session: Any, name: str, *, enabled: bool = True) -> bool:
    """Start the VM when the host boots (or not); True."""
    schema.validate(schema.Bool(), enabled, "enabled")
    dom = _domain(session, name)
    with libvirt_errors(f"VM '{name}'"):
        dom.setAutostart(1 if enabled else 0)
    return True


def vm_console(session: Any, name: str, *, lines: int = 50) -> str:
    """The last ``lines`` lines of the VM's serial console (``console: {log: true}``)."""
    schema.validate(schema.Int(1, 100000), lines, "lines")
    dom = _domain(session, name)
    path = _console_file(parse(dom.XMLDesc(0)))
    if not path:
        raise KvmError(
            f"VM '{name}' has no serial console written to a file (declare console: {{log: true}})"
        )
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise KvmError(f"cannot read {path}: {exc.strerror}") from None
    return "\n".join(text.replace("\r", "").splitlines()[-int(lines) :])


def _purge_plan(session, name, root):
    """``([(pool, volume)], [kept: reason])``: the VM's volumes that purging deletes, and why
    others stay."""
    index = depends.scan(session)
    delete, kept = [], []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        path = depends.source_path(source)
        if not path or disk.get("device") == "cdrom":
            continue
        pool, volume = _volume_of(session, path)
        if pool is None:
            kept.append(f"{path} (in no pool)")
            continue
        others = index.others_than(depends.identity(path), name, exclude=[path])
        if others:
            kept.append(f"{pool}/{volume} (also used by {', '.join(others)})")
        else:
            delete.append((pool, volume))
    return delete, kept


def vm_undefine(session: Any, name: str, *, purge: bool = False) -> dict[str, Any]:
    """Power off and undefine a VM (with its snapshot metadata); ``purge`` also deletes its
    volumes, but never one another VM uses or another image is built on. ``{removed, deleted,
    kept}``."""
    schema.validate(schema.Bool(), purge, "purge")
    dom = _domain(session, name)
    root = parse(dom.XMLDesc(XML_INACTIVE))
    delete, kept = _purge_plan(session, name, root) if purge else ([], [])
    with libvirt_errors(f"removing VM '{name}'"):
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(UNDEFINE_FLAGS)
    cloudinit.remove(name)  # the seed is salt-kvm's own file, not the VM's data
    for pool, volume in delete:
        vols_mod.volume_delete(session, pool, volume)
    return {"removed": name, "deleted": [f"{p}/{v}" for p, v in delete], "kept": kept}


# --- the states -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VmPlan:
    """What :meth:`VmResource.apply` and its summary need beyond the changes: the VM as read
    (``None``: new), the live half of a change to a running VM (:func:`salt_kvm.vm_live.plan`:
    the ops applied live, what waits for a restart) and a note for the comment (a disk's volume
    that ``test=True`` could not find yet)."""

    current: Optional[dict[str, Any]]
    ops: tuple[Any, ...] = ()
    pending: tuple[str, ...] = ()
    note: str = ""


class VmResource(plan.Resource):
    def __init__(
        self, session: Any, name: str, spec: dict[str, Any], *, test: bool = False
    ) -> None:
        self.session, self.name, self.spec, self.test = session, name, spec, test
        self.what = f"VM '{name}'"

    def _check_disks(self) -> str:
        """Every declared disk's volume exists; under ``test=True`` a missing one is only
        noted (the pool and volume states ordered before this one may make it): the note."""
        note = ""
        for index, disk in enumerate(self.spec.get("disks") or []):
            try:
                _resolve_disk(self.session, self.name, index, disk, create=True)
            except KvmError as exc:
                if not self.test:
                    raise
                note = f" ({exc})"
        return note

    def read(self) -> Optional[dict[str, Any]]:
        try:
            dom = _domain(self.session, self.name)
        except NotFound:
            return None
        with libvirt_errors(self.what):
            xml = dom.XMLDesc(XML_INACTIVE | XML_SECURE)
            live = dom.XMLDesc(XML_SECURE) if dom.isActive() else None
            return {
                "xml": xml,
                "state": _state(dom),
                "autostart": bool(dom.autostart()),
                "live": live,
            }

    def _want_state(self) -> str:
        return self.spec.get("state", "running")

    def plan(self, current: Optional[dict[str, Any]]) -> Plan:
        spec = self.spec
        guard_new_disks(
            self.session,
            self.name,
            spec,
            current_xmls=(current["xml"], current["live"]) if current else (),
        )
        new_volumes = vm_live.new_volumes(self.session, self.name, spec, test=self.test)
        if current is None:
            note = self._check_disks()
            new = {k: spec[k] for k in NEW_KEYS if spec.get(k) is not None}
            if spec.get("graphics"):
                new["graphics"] = platform.shown_spec(spec["graphics"])
            platform.check_firmware(self.name, spec.get("firmware"))
            if spec.get("cloud_init"):
                new["cloud_init"] = cloudinit.summary(
                    cloudinit.render(self.name, spec["cloud_init"])
                )
            changes: dict[str, Any] = {"vm": {"old": None, "new": new}}
            if new_volumes:
                changes["volumes"] = {"old": None, "new": [v["label"] for v in new_volumes]}
            if spec.get("autostart"):
                changes["autostart"] = {"old": False, "new": True}
            if self._want_state() != "stopped":
                changes["state"] = {"old": None, "new": self._want_state()}
            return Plan(changes, existed=False, payload=VmPlan(None, note=note))
        want_root = declared(self.session, self.name, spec, current_xml=current["xml"])
        _keep_macs(want_root, parse(current["xml"]), spec)
        have = _modelled(parse(current["xml"]))
        changes = _compare(have, _modelled(want_root), spec)
        seed_changed = self._seed_changes(have, changes)
        if "graphics" in changes:
            changes["graphics"] = platform.shown_change(
                changes["graphics"]["old"], changes["graphics"]["new"]
            )
        if new_volumes:
            changes["volumes"] = {"old": None, "new": [v["label"] for v in new_volumes]}
        ops: list[Any] = []
        pending: list[str] = []
        running = _normal_state(current["state"]) in ("running", "paused")
        if running and current["live"] and self._want_state() != "stopped":
            # what the running VM can take is applied live; the rest waits for a restart
            # with restart: true, also what an earlier run left pending (not the CPU: libvirt
            # expands a running VM's CPU, so only a changed definition says it changed)
            keys = (set(KEYS) - {"cpu"}) | set(changes) if spec.get("restart") else set(changes)
            ops, pending = vm_live.plan(
                parse(current["live"]), want_root, spec, keys, memory_changed="memory" in changes
            )
            if seed_changed and "cloud_init" not in pending:
                pending.append("cloud_init")  # the guest reads its seed at boot
            if spec.get("restart") and pending:
                ops = []
                changes["restart"] = {"old": "running an older definition", "new": "restarted"}
            else:
                if ops:
                    changes["live"] = {"old": None, "new": [op.text for op in ops]}
                if pending:
                    changes["restart"] = {"old": None, "new": vm_live.pending_text(pending)}
        if spec.get("autostart") is not None and current["autostart"] != spec["autostart"]:
            changes["autostart"] = {"old": current["autostart"], "new": spec["autostart"]}
        state = _normal_state(current["state"])
        if state != self._want_state() and changes.get("restart", {}).get("new") != "restarted":
            changes["state"] = {"old": state, "new": self._want_state()}
        return Plan(changes, payload=VmPlan(current, tuple(ops), tuple(pending)))

    def _seed_changes(self, have: dict[str, Any], changes: dict[str, Any]) -> bool:
        """Put the seed's change (content or attachment) into ``changes`` as summaries; whether
        its content changes (what a running guest only reads at its next boot)."""
        declared_seed = self.spec.get("cloud_init")
        if not declared_seed and not have["cloud_init"]:
            changes.pop("cloud_init", None)
            return False
        old = cloudinit.read(cloudinit.seed_path(self.name))
        new = cloudinit.render(self.name, declared_seed) if declared_seed else None
        if old != new or "cloud_init" in changes:
            changes["cloud_init"] = {
                "old": cloudinit.summary(old if have["cloud_init"] or declared_seed else None),
                "new": cloudinit.summary(new),
            }
        return bool(declared_seed) and old != new

    def apply(self, plan: Plan, undo: Undo) -> Optional[Plan]:
        spec, changes, current = self.spec, plan.changes, plan.payload.current
        if "volumes" in changes:
            made: list[tuple[str, str]] = []
            undo.record("made", made)  # filled as they are made: a failure half-way has the rest
            vm_live.make_volumes(self.session, self.name, spec, made=made)
        undo.record("old_seed", cloudinit.read(cloudinit.seed_path(self.name)))
        if spec.get("cloud_init"):
            cloudinit.ensure(self.name, spec["cloud_init"])
        definition = {
            k for k in changes if k not in ("state", "autostart", "restart", "live", "volumes")
        }
        if definition:
            root = declared(
                self.session, self.name, spec, current_xml=current["xml"] if current else None
            )
            if current:
                _keep_macs(root, parse(current["xml"]), spec)
            with libvirt_errors(f"defining {self.what}"):
                self.session.conn.defineXML(etree.tostring(root, encoding="unicode"))
        dom = _domain(self.session, self.name)
        done = None
        with libvirt_errors(self.what):
            if "autostart" in changes:
                dom.setAutostart(1 if spec["autostart"] else 0)
            if plan.payload.ops:
                done = self._apply_live(dom, plan)
            restart = (done or plan).changes.get("restart", {})
            if restart.get("new") == "restarted":
                vm_shutdown(
                    self.session,
                    self.name,
                    timeout=spec.get("shutdown_timeout", SHUTDOWN_TIMEOUT),
                )
            _to_state(dom, self._want_state())
        if not spec.get("cloud_init") and "cloud_init" in changes:
            cloudinit.remove(self.name)  # detached; a running guest keeps the file it has open
        return done

    def _apply_live(self, dom: Any, planned: Plan) -> Optional[Plan]:
        """The live half of the change; what the guest did not let go of becomes pending (or,
        with ``restart: true``, is applied by a restart): the plan as it was done, when that
        differs from ``planned``."""
        ops = planned.payload.ops
        unfinished = vm_live.apply_ops(dom, ops, parse(dom.XMLDesc(XML_INACTIVE)))
        if not unfinished:
            return None
        changes = copy.deepcopy(dict(planned.changes))
        pending = planned.payload.pending
        done = [op.text for op in ops if op not in [u for u, _ in unfinished]]
        if done:
            changes["live"]["new"] = done
        else:
            changes.pop("live")
        if self.spec.get("restart"):
            changes["restart"] = {"old": "running an older definition", "new": "restarted"}
        else:
            pending += tuple(why for _, why in unfinished)
            changes["restart"] = {"old": None, "new": vm_live.pending_text(list(pending))}
        return dataclasses.replace(
            planned, changes=changes, payload=dataclasses.replace(planned.payload, pending=pending)
        )

    def verify(self, plan: Plan, after: Any) -> Changes:
        remaining = dict(self.plan(after).changes)
        if remaining.get("restart", {}).get("new", "").startswith("pending"):
            remaining = {}  # written to the definition; the restart is the operator's call
        return remaining

    def _restore_seed(self, old: Optional[dict[str, bytes]]) -> None:
        with contextlib.suppress(KvmError):
            if old is None:
                cloudinit.remove(self.name)
            elif cloudinit.read(cloudinit.seed_path(self.name)) != old:
                cloudinit.write(cloudinit.seed_path(self.name), old)

    def restore(self, before: Any, undo: Undo) -> Optional[str]:
        self._restore_seed(undo.get("old_seed"))
        restored = self._restore_definition(before)
        dropped = []
        for pool, volume in reversed(undo.get("made", [])):
            with contextlib.suppress(KvmError):
                vols_mod.volume_delete(self.session, pool, volume)
                dropped.append(f"{pool}/{volume}")
        if restored and dropped:
            return f"{restored} (and deleted the new volume {', '.join(dropped)})"
        return restored

    def _restore_definition(self, before: Any) -> Optional[str]:
        if before is None:
            with contextlib.suppress(KvmError, libvirt.libvirtError):
                dom = _domain(self.session, self.name)
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(UNDEFINE_FLAGS)
                return f"removed the new {self.what}"
            return None
        with contextlib.suppress(libvirt.libvirtError):
            self.session.conn.defineXML(before["xml"])
            return "the previous definition"
        return None

    def summary(self, plan: Plan, test: bool) -> str:
        verb = "would be" if test else "was"
        changes = plan.changes
        made = (
            f"; {'would create' if test else 'created'} volume "
            f"{', '.join(changes['volumes']['new'])}"
            if "volumes" in changes
            else ""
        )
        if "vm" in changes:
            started = " and started" if changes.get("state", {}).get("new") == "running" else ""
            return f"{self.what} {verb} defined{started}{made}{plan.payload.note}"
        base = super().summary(plan, test) + made
        if "live" in changes:
            base += (
                f"; {'would be ' if test else ''}applied live: {', '.join(changes['live']['new'])}"
            )
        if changes.get("restart", {}).get("new", "").startswith("pending"):
            base += (
                f"; {', '.join(plan.payload.pending)}: written to its definition, takes effect "
                "when it restarts (restart: true restarts it now)"
            )
        return base


def _normal_state(state):
    return {
        "blocked": "running",
        "shutdown": "stopped",
        "shutoff": "stopped",
        "crashed": "stopped",
        "nostate": "stopped",
    }.get(state, state)


def _to_state(dom, want):
    state = _normal_state(STATES.get(dom.info()[0], "unknown"))
    if want == "running":
        if state == "paused":
            dom.resume()
        elif state != "running":
            dom.create()
    elif want == "paused":
        if state == "stopped":
            dom.create()
        if _normal_state(STATES.get(dom.info()[0])) == "running":
            dom.suspend()
    elif want == "stopped" and state in ("running", "paused"):
        dom.destroy()


def vm_present(
    session: Any,
    name: str,
    *,
    test: bool = False,
    run_state: Optional[str] = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """State: the VM is defined as declared, in its declared run state and autostart.

    The pillar's ``state`` arrives as ``run_state``: Salt reserves the argument
    name ``state`` (the state module of a low chunk).
    """
    try:
        if run_state is not None:
            kwargs["state"] = run_state
        spec = schema.validate_args(schema.VM, name, kwargs, name_field=schema.OBJNAME)
        spec = plan.declared(spec, state_only=("absent", "purge"))
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"VM '{name}': {exc}")
    return plan.ensure(name, VmResource(session, name, spec, test=test), test=test)


def vm_absent(
    session: Any, name: str, *, purge: bool = False, test: bool = False
) -> dict[str, Any]:
    """State: the VM is not defined; ``purge`` also deletes its volumes that nothing else uses."""
    try:
        schema.validate(schema.OBJNAME, name, name)
        schema.validate(schema.Bool(), bool(purge), f"{name}:purge")
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"VM '{name}': {exc}")
    what = f"VM '{name}'"
    volumes: dict[str, list[str]] = {"delete": [], "kept": []}
    seed = cloudinit.seed_path(name)
    seed_found: list[bool] = []

    def exists():
        try:
            shown = vm_show(session, name)
        except NotFound:
            return None
        if not seed_found:
            seed_found.append(os.path.exists(seed))
        if purge:
            delete, kept = _purge_plan(
                session, name, parse(_domain(session, name).XMLDesc(XML_INACTIVE))
            )
            volumes.update(delete=[f"{p}/{v}" for p, v in delete], kept=kept)
        return shown

    def remove(_current):
        vm_undefine(session, name, purge=purge)

    ret = plan.absent(name, what, exists, remove, test=test)
    if ret["changes"] and ret["result"] is not False:
        if volumes["delete"]:
            ret["changes"]["volumes"] = {"old": volumes["delete"], "new": None}
        if seed_found and seed_found[0]:
            ret["changes"]["cloud_init"] = {"old": seed, "new": None}
        if not purge:
            ret["comment"] += "; its volumes are kept (purge: true deletes those nothing else uses)"
        elif volumes["kept"]:
            ret["comment"] += f"; volumes kept: {', '.join(volumes['kept'])}"
    return ret
