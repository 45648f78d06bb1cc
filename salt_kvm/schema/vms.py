"""The records of ``kvm:vms``: a VM, its disks, NICs, boot, console, graphics, cloud-init."""

from __future__ import annotations

from salt_kvm import units
from salt_kvm.schema.fields import (
    Address,
    Bool,
    Duration,
    Enum,
    Int,
    List,
    Mac,
    MappingOrText,
    PortOrAuto,
    Record,
    Secret,
    Size,
    Str,
    _join,
    describe,
)
from salt_kvm.schema.names import ABSPATH, IFNAME, OBJNAME, VOLNAME


def _check_vm_disk(rec, path, errors):
    if rec.get("device") == "cdrom":
        for key in ("size", "backing", "format"):
            if key in rec:
                errors.add(
                    _join(path, key), "cannot make a CD-ROM (a CD-ROM is an existing volume)"
                )
        return
    if "format" in rec and "size" not in rec and "backing" not in rec:
        errors.add(
            _join(path, "format"), "needs size or backing (it is the format of a new volume)"
        )
    backing = rec.get("backing")
    if backing is not None:
        if rec.get("format", "qcow2") != "qcow2":
            errors.add(
                _join(path, "format"), "must be qcow2 with backing (a copy-on-write child is qcow2)"
            )
        if backing == rec.get("volume"):
            errors.add(_join(path, "backing"), "cannot be the volume itself")


VM_DISK = Record(
    {
        "pool": OBJNAME,
        "volume": VOLNAME,
        "device": Enum("disk", "cdrom"),
        "size": Size(),
        "format": Enum("raw", "qcow2", "vmdk"),
        "backing": VOLNAME,
        "shareable": Bool(),
    },
    required=("pool", "volume"),
    check_all=_check_vm_disk,
)
describe(
    VM_DISK,
    {
        "pool": (
            "The pool holding the volume (declared under ``kvm:pools`` or existing on the host)."
        ),
        "volume": "The volume's name in that pool.",
        "device": ("``disk`` (virtio) or ``cdrom`` (SATA, read-only).", "disk"),
        "size": (
            (
                "Make the volume with this capacity when it does not exist (``20G``). An "
                "existing volume is never re-created or resized by the VM: one smaller than "
                "``size`` fails the state (grow it with ``kvm.volume_resize`` or declare it "
                "under ``kvm:pools``)."
            ),
            "the volume must exist",
        ),
        "format": (
            "The format of a volume made from ``size``: ``raw``, ``qcow2`` or ``vmdk``.",
            "qcow2 in file pools, raw in the others",
        ),
        "backing": (
            "Make the volume, when it does not exist, as a qcow2 copy-on-write child of this "
            "volume of the same pool (its size is the base's unless ``size`` says more)."
        ),
        "shareable": (
            (
                "A disk meant to be written by several VMs at once (a cluster filesystem's disk; "
                "raw volumes). Without it, a volume another VM has as a disk is refused."
            ),
            "false",
        ),
    },
)


def _check_nic(rec, path, errors):
    if bool(rec.get("bridge")) == bool(rec.get("network")):
        errors.add(path, "give exactly one of bridge and network")


VM_NIC = Record(
    {
        "bridge": IFNAME,
        "network": OBJNAME,
        "mac": Mac(),
        "model": Enum("virtio", "e1000", "e1000e", "rtl8139"),
        "link": Enum("up", "down"),
    },
    check_all=_check_nic,
)
describe(
    VM_NIC,
    {
        "bridge": "A host bridge (declared under ``kvm:bridges`` or existing on the host).",
        "network": "A libvirt network.",
        "mac": (
            "The NIC's MAC address; libvirt picks one (and keeps it) when not given.",
            "chosen by libvirt",
        ),
        "model": ("The NIC model the guest sees.", "virtio"),
        "link": (
            "The NIC's link state as the guest sees it (``down``: the cable pulled); changed live.",
            "up",
        ),
    },
)

VM_BOOT = Record(
    {
        "kernel": ABSPATH,
        "initrd": ABSPATH,
        "cmdline": Str(r"[^\0\n]*", max_len=4096, what="a kernel command line"),
    },
    required=("kernel",),
)
describe(
    VM_BOOT,
    {
        "kernel": "The kernel image to boot (a file on the host).",
        "initrd": "The initramfs to boot with it.",
        "cmdline": (
            "The kernel command line (``console=ttyS0`` sends its console to the serial port)."
        ),
    },
)
VM_CONSOLE = Record({"log": Bool()})
describe(
    VM_CONSOLE,
    {
        "log": (
            (
                "Write the serial console to ``/var/log/libvirt/qemu/<name>.console.log`` (read "
                "it with ``kvm.vm_console``)."
            ),
            "false",
        )
    },
)


VM_CLOUD_INIT = Record(
    {
        "user_data": MappingOrText(),
        "meta_data": MappingOrText(text=False),
        "network_config": MappingOrText(),
    }
)
describe(
    VM_CLOUD_INIT,
    {
        "user_data": (
            (
                "cloud-init's user data: a mapping (written as ``#cloud-config`` YAML) or a "
                "string used as it is (a script, a MIME multipart)."
            ),
            "an empty ``#cloud-config``",
        ),
        "meta_data": (
            (
                "Merged over the defaults ``instance-id: <vm>-<hash of user-data and "
                "network-config>`` and ``local-hostname: <vm>``."
            ),
            "instance-id and local-hostname",
        ),
        "network_config": (
            "cloud-init network config (version 1 or 2) as a mapping, or a string used as it is.",
            "none (cloud-init's DHCP on the first NIC)",
        ),
    },
)


def _check_graphics(rec, path, errors):
    if rec["type"] == "none":
        for key in ("password", "listen", "port"):
            if key in rec:
                errors.add(_join(path, key), "is not used with type none")
    elif rec["type"] == "vnc" and len(rec.get("password", "")) > 8:
        errors.add(
            _join(path, "password"),
            "VNC uses only the first 8 characters of a password: give at most 8",
        )


VM_GRAPHICS = Record(
    {
        "type": Enum("none", "vnc", "spice"),
        "password": Secret(max_len=64),
        "listen": Address(),
        "port": PortOrAuto(5900, 65535),
    },
    required=("type",),
    shorthand="type",
    check_all=_check_graphics,
)
describe(
    VM_GRAPHICS,
    {
        "type": (
            "``vnc``, ``spice`` or ``none`` (no graphics device); ``graphics: none`` and "
            "``graphics: vnc`` are short for ``{type: ...}``."
        ),
        "password": (
            (
                "The console's password (VNC: at most 8 characters); never shown in state "
                "output, ``vm_show`` or logs."
            ),
            "no password",
        ),
        "listen": ("The address the console listens on.", "127.0.0.1"),
        "port": ("The TCP port, or ``auto`` (the first free one from 5900).", "auto"),
    },
)


def _check_vm(rec, path, errors):
    seen = {}
    for i, disk in enumerate(rec.get("disks", [])):
        key = (disk["pool"], disk["volume"])
        if key in seen:
            errors.add(
                _join(_join(_join(path, "disks"), i), "volume"),
                f"volume {disk['pool']}/{disk['volume']} is already disk {seen[key]} of this VM",
            )
        seen.setdefault(key, i)
    for i, disk in enumerate(rec.get("disks", [])):
        if disk.get("backing") and (disk["pool"], disk["backing"]) in seen:
            errors.add(
                _join(_join(_join(path, "disks"), i), "backing"),
                (
                    f"{disk['pool']}/{disk['backing']} is also disk "
                    f"{seen[(disk['pool'], disk['backing'])]} of this VM (a base is read-only "
                    "under its children)"
                ),
            )
    if "max_memory" in rec and "memory" in rec and rec["memory"] > rec["max_memory"]:
        errors.add(
            _join(path, "memory"),
            f"is more than max_memory ({units.human_size(rec['max_memory'])})",
        )
    if "max_vcpus" in rec and "vcpus" in rec and rec["vcpus"] > rec["max_vcpus"]:
        errors.add(_join(path, "vcpus"), f"is more than max_vcpus ({rec['max_vcpus']})")


VM = Record(
    {
        "type": Enum("kvm", "qemu"),
        "memory": Size(),
        "max_memory": Size(),
        "vcpus": Int(1, 512),
        "max_vcpus": Int(1, 512),
        "cpu": Str(
            r"[A-Za-z0-9_.-]+", max_len=64, what="host-model, host-passthrough or a CPU model name"
        ),
        "machine": Str(r"[A-Za-z0-9_.-]+", max_len=64, what="a machine type (like pc or q35)"),
        "disks": List(VM_DISK),
        "nics": List(VM_NIC),
        "boot": VM_BOOT,
        "console": VM_CONSOLE,
        "firmware": Enum("bios", "uefi"),
        "graphics": VM_GRAPHICS,
        "cloud_init": VM_CLOUD_INIT,
        "autostart": Bool(),
        "state": Enum("running", "stopped", "paused"),
        "restart": Bool(),
        "shutdown_timeout": Duration(),
        "absent": Bool(),
        "purge": Bool(),
    },
    required=("memory", "vcpus"),
    check_all=_check_vm,
)
describe(
    VM,
    {
        "type": (
            (
                "``kvm`` (hardware virtualisation) or ``qemu`` (software emulation, where KVM is "
                "missing)."
            ),
            "kvm where /dev/kvm exists, else qemu",
        ),
        "memory": (
            "The VM's RAM: ``512M``, ``2G`` (binary units). Up to ``max_memory`` it changes live "
            "(the balloon); above it at a restart."
        ),
        "max_memory": (
            (
                "The most RAM the VM can be given without a restart (libvirt's ``<memory>``; "
                "``memory`` is its ``<currentMemory>``)."
            ),
            "memory",
        ),
        "vcpus": (
            "The number of virtual CPUs. Up to ``max_vcpus`` more are plugged in live; fewer are "
            "unplugged live when the guest lets them go."
        ),
        "max_vcpus": ("The most vCPUs the VM can have without a restart.", "vcpus"),
        "cpu": ("``host-model``, ``host-passthrough`` or a named CPU model.", "libvirt's default"),
        "machine": ("The machine type (``pc``, ``q35``).", "libvirt's default"),
        "disks": (
            "Volumes of pools as disks (``vda``, ``vdb``... in order) or CD-ROMs; a disk removed "
            "from the list is detached, its volume kept."
        ),
        "nics": "NICs on host bridges or libvirt networks, in order.",
        "boot": "Direct kernel boot: ``kernel``, ``initrd``, ``cmdline``.",
        "console": (
            "``log: true`` writes the serial console to a file (read it with ``kvm.vm_console``)."
        ),
        "firmware": (
            (
                "``bios`` or ``uefi`` (OVMF, Debian's ``ovmf`` package, chosen by libvirt, "
                "Secure Boot off, NVRAM per VM); a change waits for a restart."
            ),
            "left as it is (bios for a new VM)",
        ),
        "graphics": (
            (
                "``none`` or ``{type: vnc|spice, password, listen, port}``; a change waits for a "
                "restart."
            ),
            "left as it is (none for a new VM)",
        ),
        "cloud_init": (
            (
                "A NoCloud seed ISO (``/var/lib/libvirt/salt-kvm/cloud-init/<vm>.iso``) from "
                "``user_data``, ``meta_data``, ``network_config``, attached as a read-only "
                "CD-ROM; rewritten only when its content changes, which waits for a restart."
            ),
            "no seed",
        ),
        "autostart": "Start the VM when the host boots.",
        "state": ("``running``, ``stopped`` or ``paused``.", "running"),
        "restart": (
            (
                "Restart the VM (ACPI shutdown, then start) for a change that needs it; "
                "otherwise the change waits in the definition and is reported as pending."
            ),
            "false",
        ),
        "shutdown_timeout": ("How long a restart waits for the guest to shut down.", "120s"),
        "absent": (
            "Power off and undefine the VM; its volumes are kept unless ``purge``.",
            "false",
        ),
        "purge": (
            (
                "With ``absent``: also delete its volumes that no other VM uses and no other "
                "image is built on."
            ),
            "false",
        ),
    },
)
