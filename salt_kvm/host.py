"""Facts about the hypervisor host (``kvm.host_info``, the ``kvm`` grains)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from salt_kvm.conn import Session

KVM_DEVICE = "/dev/kvm"
_NESTED = ("/sys/module/kvm_intel/parameters/nested", "/sys/module/kvm_amd/parameters/nested")


def _version(number):
    """libvirt's packed version (9000000) -> '9.0.0'."""
    number = int(number)
    return f"{number // 1000000}.{(number // 1000) % 1000}.{number % 1000}"


#: libtool names the library libvirt.so.0.<major * 1000 + minor>.<micro>
_LIBRARY = re.compile(r"^libvirt\.so\.0\.(\d+)\.(\d+)$")


def _library_dirs():
    machine = os.uname().machine
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for prefix in ("/usr/local/lib", "/lib", "/usr/lib"):
        dirs += [f"{prefix}/{machine}-linux-gnu", f"{prefix}64", prefix]
    return dirs


def library_version() -> Optional[str]:
    """The libvirt library's version ('9.0.0') from the file ``libvirt.so.0`` points to.

    What ``libvirt.getVersion()`` returns, without importing libvirt-python
    (which loads libvirt and its dependencies: about 10 MB and 10 ms, for a
    grain). ``None`` when no ``libvirt.so.0`` is found in the usual places.
    """
    for directory in _library_dirs():
        match = _LIBRARY.match(
            os.path.basename(os.path.realpath(os.path.join(directory, "libvirt.so.0")))
        )
        if match:  # libvirt's own number is major * 1,000,000 + minor * 1,000 + micro
            return _version(int(match.group(1)) * 1000 + int(match.group(2)))
    return None


def nested() -> bool:
    """True when nested virtualisation is on in the loaded KVM module."""
    for path in _NESTED:
        try:
            with open(path, encoding="ascii") as fh:
                return fh.read().strip() in ("Y", "1")
        except OSError:
            continue
    return False


def has_kvm_device() -> bool:
    """Whether ``/dev/kvm`` exists."""
    return os.path.exists(KVM_DEVICE)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def paths(uri: str) -> dict[str, str]:
    """Where libvirt keeps its files for this connection URI."""
    if "/session" in uri:
        home = os.path.expanduser("~")
        config = os.path.join(home, ".config", "libvirt")
        data = os.path.join(home, ".local", "share", "libvirt")
        return {
            "images": os.path.join(data, "images"),
            "pool_definitions": os.path.join(config, "storage"),
            "network_definitions": os.path.join(config, "qemu", "networks"),
            "vm_definitions": os.path.join(config, "qemu"),
            "snapshot_metadata": os.path.join(
                os.path.expanduser("~"), ".config", "libvirt", "qemu", "snapshot"
            ),
        }
    return {
        "images": "/var/lib/libvirt/images",
        "pool_definitions": "/etc/libvirt/storage",
        "network_definitions": "/etc/libvirt/qemu/networks",
        "vm_definitions": "/etc/libvirt/qemu",
        "snapshot_metadata": "/var/lib/libvirt/qemu/snapshot",
    }


def info(session: Session) -> dict[str, Any]:
    """Everything ``kvm.host_info`` reports, read from libvirt and /proc, /sys."""
    # (grains stay cheap)
    from salt_kvm.xml.base import parse  # pylint: disable=import-outside-toplevel

    conn = session.conn
    model, memory_mib, cpus, mhz, numa_nodes, sockets, cores, threads = conn.getInfo()[:8]
    kvm_dev = has_kvm_device()
    hypervisor = "qemu"
    try:
        caps = parse(conn.getDomainCapabilities(None, None, None, "kvm"))
        if caps.findtext("domain") == "kvm" and kvm_dev:
            hypervisor = "kvm"
    except Exception:  # pylint: disable=broad-except
        hypervisor = "qemu"
    image_dir = paths(session.uri)["images"]
    try:
        target = parse(conn.storagePoolLookupByName("default").XMLDesc(0)).findtext("target/path")
        if target:
            image_dir = target
    except Exception:  # pylint: disable=broad-except
        pass
    locations = paths(session.uri)
    locations["images"] = image_dir
    return {
        "hypervisor": hypervisor,
        "kvm_device": kvm_dev,
        "nested": nested(),
        "uri": session.uri,
        "hostname": conn.getHostname(),
        "libvirt_version": _version(conn.getLibVersion()),
        "qemu_version": _version(conn.getVersion()),
        "cpu": {
            "model": cpu_model(),
            "arch": model,
            "count": cpus,
            "mhz": mhz,
            "numa_nodes": numa_nodes,
            "sockets": sockets,
            "cores": cores,
            "threads": threads,
        },
        "memory": {"total": memory_mib * 1024 * 1024, "free": conn.getFreeMemory()},
        "paths": locations,
    }


def grains() -> dict[str, Any]:
    """The ``kvm`` grains: cheap; no libvirt connection, and libvirt-python is not even imported
    when the library's file name tells its version (:func:`library_version`)."""
    import importlib.util  # pylint: disable=import-outside-toplevel

    kvm_dev = has_kvm_device()
    result: dict[str, Any] = {"hypervisor": "none", "libvirt_version": None, "nested": nested()}
    if importlib.util.find_spec("libvirt") is None:
        return result
    version = library_version()
    if version is None:  # not where the loader usually finds it: ask the bindings (loads it)
        import libvirt  # pylint: disable=import-outside-toplevel

        version = _version(libvirt.getVersion())
    result["libvirt_version"] = version
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(os.uname().machine, os.uname().machine)
    qemu = any(
        os.path.exists(p)
        for p in (f"/usr/bin/qemu-system-{arch}", "/usr/bin/kvm", "/usr/libexec/qemu-kvm")
    )
    if qemu:
        result["hypervisor"] = "kvm" if kvm_dev else "qemu"
    return result
