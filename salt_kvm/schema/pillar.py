"""The whole ``kvm`` pillar: its sections, the checks across them, and validation."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Optional

from salt_kvm.schema.bridges import BRIDGE
from salt_kvm.schema.fields import Duration, Field, Map, Record, Str, _join, describe, validate
from salt_kvm.schema.names import IFNAME, OBJNAME
from salt_kvm.schema.networks import NETWORK
from salt_kvm.schema.snapshots import RETENTION
from salt_kvm.schema.storage import POOL
from salt_kvm.schema.vms import VM


def _check_vms(vms, path, errors):
    macs = {}
    for vname, vm in vms.items():
        if vm.get("absent"):
            continue
        for i, nic in enumerate(vm.get("nics", [])):
            mac = nic.get("mac")
            if mac and mac in macs:
                errors.add(
                    _join(_join(_join(_join(path, "vms"), vname), "nics"), i),
                    f"MAC {mac} is already used by VM {macs[mac]!r}",
                )
            elif mac:
                macs[mac] = vname
    users = {}
    for vname, vm in vms.items():
        if vm.get("absent"):
            continue
        for i, disk in enumerate(vm.get("disks", [])):
            if disk.get("device") == "cdrom":
                continue
            key = (disk["pool"], disk["volume"])
            if (
                key in users
                and users[key][0] != vname
                and not (disk.get("shareable") and users[key][1])
            ):
                errors.add(
                    _join(_join(_join(_join(path, "vms"), vname), "disks"), i),
                    (
                        f"volume {key[0]}/{key[1]} is already a disk of VM {users[key][0]!r} "
                        "(shareable: true on both for a disk meant to be shared)"
                    ),
                )
            users.setdefault(key, (vname, bool(disk.get("shareable"))))


CONNECTION = Record(
    {"uri": Str(r"[a-z0-9+]+://[^\s]*", what="a libvirt URI (like qemu:///system)")}
)
describe(
    CONNECTION,
    {
        "uri": (
            (
                "The libvirt URI the ``kvm`` modules connect to; also settable in the minion "
                "config (read with ``config.get``)."
            ),
            "qemu:///system",
        ),
    },
)

PROGRESS = Record({"interval": Duration()})
describe(
    PROGRESS,
    {
        "interval": (
            (
                "Seconds (or a duration like ``10s``) between two progress reports of a long "
                "import, clone, wipe or snapshot merge; also settable in the minion config (read "
                "with ``config.get``)."
            ),
            "5s",
        ),
    },
)


def _check_vm_volumes(rec, path, errors):
    """A volume a VM disk entry makes (``size``/``backing``): declared in one place only, in a
    pool this pillar does not remove, on a base it does not remove."""
    pools = rec.get("pools", {})
    for vname, vm in rec.get("vms", {}).items():
        if vm.get("absent"):
            continue
        for i, disk in enumerate(vm.get("disks", [])):
            if not (disk.get("size") or disk.get("backing")):
                continue
            dpath = _join(_join(_join(_join(path, "vms"), vname), "disks"), i)
            pool = pools.get(disk["pool"])
            if pool is None:
                continue
            if pool.get("absent"):
                errors.add(_join(dpath, "pool"), f"pool {disk['pool']!r} is declared absent")
                continue
            vols = pool.get("volumes", {})
            if disk["volume"] in vols:
                errors.add(
                    _join(dpath, "volume"),
                    (
                        f"{disk['pool']}/{disk['volume']} is also declared under "
                        f"kvm:pools:{disk['pool']}:volumes; declare how to make it in one place"
                    ),
                )
            if disk.get("backing") in vols and vols[disk["backing"]].get("absent"):
                errors.add(
                    _join(dpath, "backing"), f"{disk['pool']}/{disk['backing']} is declared absent"
                )


def _check_pillar(rec, path, errors):
    _check_vms(rec.get("vms", {}), path, errors)
    _check_vm_volumes(rec, path, errors)
    bridges = rec.get("bridges", {})
    owner = {}
    for bname, bridge in bridges.items():
        if bridge.get("absent"):
            continue
        for i, port in enumerate(bridge.get("ports", [])):
            pname = port["name"]
            ppath = _join(_join(_join(_join(path, "bridges"), bname), "ports"), i)
            if pname in bridges:
                errors.add(ppath, f"{pname!r} is itself a bridge declared here")
            elif pname in owner:
                errors.add(ppath, f"port {pname!r} is already a port of bridge {owner[pname]!r}")
            owner.setdefault(pname, bname)
    networks = rec.get("networks", {})
    for nname, net in networks.items():
        if net.get("absent") or net.get("mode") == "bridge":
            continue
        br = net.get("bridge")
        if br and br in bridges:
            errors.add(
                _join(_join(_join(path, "networks"), nname), "bridge"),
                f"{br!r} is a host bridge declared under kvm:bridges; use mode: bridge",
            )
    for key in ("address", "address6"):
        subnets = []
        for nname, net in networks.items():
            if net.get(key) and not net.get("absent"):
                subnets.append((nname, ipaddress.ip_interface(net[key]).network))
        for i, (a, na) in enumerate(subnets):
            for b, nb in subnets[i + 1 :]:
                if na.overlaps(nb):
                    errors.add(
                        _join(_join(_join(path, "networks"), b), key),
                        f"{nb} overlaps network {a!r} ({na})",
                    )
        # libvirt refuses to start a network whose subnet is already routed to a host bridge
        for nname, net_subnet in subnets:
            for bname, bridge in bridges.items():
                if bridge.get("absent"):
                    continue
                for address in bridge.get("addresses", []):
                    if ipaddress.ip_interface(address).network.overlaps(net_subnet):
                        errors.add(
                            _join(_join(_join(path, "networks"), nname), key),
                            f"{net_subnet} overlaps {address} of bridge {bname!r}",
                        )


PILLAR = Record(
    {
        "connection": CONNECTION,
        "progress": PROGRESS,
        "bridges": Map(IFNAME, BRIDGE),
        "networks": Map(OBJNAME, NETWORK),
        "pools": Map(OBJNAME, POOL),
        "vms": Map(OBJNAME, VM),
        "snapshots": Map(OBJNAME, RETENTION),
    },
    check_all=_check_pillar,
)
describe(
    PILLAR,
    {
        "connection": "How the minion reaches libvirt.",
        "progress": (
            "How often long work reports its progress (minion log and ``salt/kvm/progress/*`` "
            "events)."
        ),
        "bridges": (
            "Kernel bridges by name (a Linux link name, at most 15 characters); applied first."
        ),
        "networks": "libvirt networks by name; applied after the bridges.",
        "pools": "libvirt storage pools by name, with their volumes; applied after the networks.",
        "vms": (
            "VMs by name, with their disks (volumes of pools) and NICs; applied after the "
            "volumes, before snapshots."
        ),
        "snapshots": "Snapshot retention by VM name; applied last.",
    },
)


def validate_pillar(pillar: Optional[dict], root: str = "kvm") -> dict:
    """Validate the whole ``kvm`` pillar tree (``None`` is an empty tree)."""
    return validate(PILLAR, {} if pillar is None else pillar, root)


def validate_args(
    schema: Field,
    name: Any,
    kwargs: Mapping[str, Any],
    *,
    name_field: Optional[Field] = None,
    path: Optional[str] = None,
) -> Any:
    """Validate a state's keyword arguments (Salt's own ``__*`` keys dropped)."""
    args = {k: v for k, v in kwargs.items() if not k.startswith("__") and v is not None}
    path = path or str(name)
    if name_field is not None:
        validate(name_field, name, path)
    return validate(schema, args, path)
