"""Real Linux guests for the functional tests: what a running VM sees.

A guest is Debian's own kernel (``linux-image-amd64``) booted directly by
libvirt (``<os><kernel/><initrd/><cmdline/>``) with a small initramfs: a static
busybox, the virtio modules the kernel needs for its disk and NIC (loaded in
dependency order from ``modules.dep``) and an ``/init`` that runs the workloads
named on the kernel command line::

    kvt.ip=198.51.100.7/24 kvt.work=ping:198.51.100.1 kvt.work=counter

Each workload reports on the serial console (a file, ``<serial type='file'>``
with ``append='on'``), one line each starting with ``KVT``:

``ping:IP``      ping IP every 0.2 s (busybox ``ping``; each reply is a ``seq=N`` line)
``counter``      a counter on the disk: each tick reads sector 0, checks it holds the
                 value it wrote last (``KVT MISMATCH ram=.. disk=..`` when RAM and disk
                 are out of step), writes the next value to sector 0 and to slot
                 ``1 + N % 256`` with O_DIRECT and reports ``KVT counter N`` after the
                 write is acknowledged
``size``         ``KVT size S`` (sectors of /dev/vda) whenever it changes
``scan``         ``KVT nonzero N`` (bytes of /dev/vda that are not zero) and ``KVT head TEXT``
``stamp:TEXT``   write TEXT to sector 0 of /dev/vda, ``KVT stamped TEXT``
``dhcp``         ``udhcpc`` on eth0, ``KVT lease IP router R``, then ping the router
``agent``        mount the Debian root filesystem on /dev/vda (:func:`rootfs`), run its
                 ``qemu-ga`` on the agent's virtio port (its log on the console) and
                 write a counter file on it (``KVT fs N``)
``ifaces``       ``KVT ifaces NAME ...`` (the names in /sys/class/net) whenever the list changes:
                 a NIC plugged in or taken away live shows here
``cpus``         ``KVT cpus LIST`` (/sys/devices/system/cpu/present, like ``0-1``) whenever it
                 changes: a vCPU plugged in live shows here
``mem``          ``KVT mem KB`` (MemTotal) whenever it changes: the balloon (virtio_balloon) moved
``cloudinit``    mount the Debian root filesystem on /dev/vda (:func:`rootfs` variant
                 ``cloud-init``) and run its ``cloud-init`` stages in order, as their systemd
                 units would (``init --local``, ``init``, ``modules --mode=config``,
                 ``modules --mode=final``; their output on the console), then
                 ``KVT cloud-init done``; the NoCloud seed is the ``cidata`` CD-ROM (``ahci``,
                 ``sr_mod`` and ``isofs`` are in the initramfs)
``poweroff``     end the guest (``reboot -f``: its domain has ``on_reboot`` destroy)

Workloads that loop run in the background, the others in order. The image is
built once and cached under :data:`CACHE` (keyed by the kernel version and a hash
of this file), so a test session pays for it only the first time on a host.
KVM is used where it boots Linux; where it does not (nested KVM on some hosts
hangs early in boot) the guest runs under QEMU's TCG (``<domain type='qemu'>``):
see :func:`domain_type`, which probes once and caches the answer.
"""

import contextlib
import gzip
import hashlib
import io
import ipaddress
import json
import lzma
import os
import pathlib
import re
import shutil
import stat
import struct
import subprocess
import time
import zlib

from lxml import etree

from tests.support import sandbox

CACHE = pathlib.Path(os.environ.get("KVT_CACHE", "/var/tmp/kvt-cache"))
BUSYBOX = "/bin/busybox"
#: what the guest needs; their dependencies come from modules.dep
WANTED_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_balloon",
    "crc32c_generic",
    "ext4",
    "ahci",
    "sr_mod",
    "isofs",
    "button",
    "evdev",
)
MEMORY_MIB = 192
#: a line on the console that this module's init writes
LINE = re.compile(r"^KVT (.*)$")
PING_REPLY = re.compile(r"bytes from ([0-9.]+): seq=(\d+)")
INTERVAL = 0.2  # seconds between pings and counter ticks
#: bump when the way the image is built changes (the cache key also covers the init script)
BUILD = 1

INIT = r"""#!/bin/sh
# kvt guest init: the workloads named by kvt.work= on the kernel command line
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# (button: no ACPI under PVH)
for m in $(cat /etc/kvt-modules); do insmod /lib/modules/$m.ko 2>/dev/null; done
say() { echo "KVT $*" > /dev/ttyS0; }
params() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
say boot $(uname -r) $(cut -d' ' -f1 /proc/uptime)
wait_disk() {
    i=0
    # writing to a missing /dev/vda would only make a file in devtmpfs
    while [ ! -b /dev/vda ]; do
        i=$((i+1)); [ $i -gt 100 ] && { say error no /dev/vda; return 1; }; sleep 0.1
    done
}
rsec() {  # the text in sector $1 of /dev/vda, read past the page cache
    v=$(dd if=/dev/vda bs=512 count=1 skip=$1 iflag=direct 2>/dev/null | tr -d '\000' | tr -d ' \n')
    echo "${v:-0}"
}
wsec() {  # write $2 to sector $1 of /dev/vda, acknowledged by the device
    printf '%-511s\n' "$2" | dd of=/dev/vda bs=512 count=1 seek=$1 \
        iflag=fullblock oflag=direct conv=notrunc,fsync 2>/dev/null
}
w_ping() { ping -i 0.2 "$1" > /dev/ttyS0 2>&1; }
w_counter() {
    wait_disk || return
    n=$(rsec 0)
    say counter-start $n
    while :; do
        d=$(rsec 0)
        [ "$d" = "$n" ] || say MISMATCH ram=$n disk=$d
        n=$((n+1))
        wsec $((1 + n % 256)) $n && wsec 0 $n && say counter $n
        sleep 0.2
    done
}
watch() {  # watch LABEL COMMAND...: print "KVT LABEL value" whenever the command's output changes
    label=$1; shift; last=
    while :; do
        v=$("$@")
        [ "$v" = "$last" ] || say $label $v
        last=$v
        sleep 0.2
    done
}
w_size() { wait_disk && watch size cat /sys/block/vda/size; }
# the ACPI power button powers the guest off (a graceful shutdown); needs the non-PVH kernel
w_acpi() {
    mkdir -p /etc/acpi/PWRF
    printf '#!/bin/sh\necho "KVT acpi poweroff" > /dev/ttyS0\nsync\npoweroff -f\n' \
        > /etc/acpi/PWRF/00000080
    chmod +x /etc/acpi/PWRF/00000080
    i=0  # acpid opens the event devices there are when it starts: wait for the power button's
    while :; do
        ev=$(awk '/Power Button/ {f=1}
            f && /Handlers/ {for (i = 1; i <= NF; i++) if ($i ~ /^event/) print $i; exit}' \
            /proc/bus/input/devices)
        [ -n "$ev" ] && [ -e /dev/input/$ev ] && break
        i=$((i+1)); [ $i -gt 100 ] && { say error no power button; return; }; sleep 0.1
    done
    # in the foreground (as a daemon it logs to a /var/log there is not)
    acpid -d -c /etc/acpi > /dev/ttyS0 2>&1 &
    say acpid $ev
}
w_scan() {
    wait_disk || return
    say nonzero $(tr -d '\000' < /dev/vda | wc -c)
    say head $(rsec 0)
}
w_stamp() { wait_disk && wsec 0 "$1" && sync && say stamped "$1"; }
w_agent() {  # the Debian root filesystem on /dev/vda: its qemu-guest-agent on the agent's port
    wait_disk || return
    mkdir -p /mnt
    mount -t ext4 /dev/vda /mnt || { say error cannot mount /dev/vda; return; }
    mount -t proc proc /mnt/proc; mount -t sysfs sysfs /mnt/sys; mount -t devtmpfs devtmpfs /mnt/dev
    port=
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] || { say error no agent port; return; }
    chroot /mnt /usr/sbin/qemu-ga -m virtio-serial -p "$port" -v -l /dev/ttyS0 &
    say agent $port
    n=0
    while :; do  # a writer on the filesystem: it blocks while the agent holds it frozen
        n=$((n+1)); echo $n > /mnt/kvt-counter; sync; say fs $n; sleep 0.2
    done
}
w_ifaces() { watch ifaces ls /sys/class/net; }
w_cpus() { watch cpus cat /sys/devices/system/cpu/present; }
w_mem() { watch mem awk '/^MemTotal/ {print $2}' /proc/meminfo; }
# the Debian root filesystem on /dev/vda: its real cloud-init, the four stages its units run
w_cloudinit() {
    wait_disk || return
    mkdir -p /mnt
    mount -t ext4 /dev/vda /mnt || { say error cannot mount /dev/vda; return; }
    mount -t proc proc /mnt/proc; mount -t sysfs sysfs /mnt/sys; mount -t devtmpfs devtmpfs /mnt/dev
    mount -t tmpfs tmpfs /mnt/run; mount -t tmpfs tmpfs /mnt/tmp
    i=0
    while [ ! -b /dev/sr0 ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done
    say cdrom $(ls /dev/sr* 2>/dev/null)
    for stage in "init --local" "init" "modules --mode=config" "modules --mode=final"; do
        chroot /mnt /usr/bin/cloud-init $stage > /dev/ttyS0 2>&1
        say cloud-init $stage: $?
    done
    say cloud-init done
}
w_dhcp() {
    ip link set eth0 up
    if udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 30 -T 1 >/dev/ttyS0 2>&1; then
        router=$(cat /tmp/router)
        say lease $(cat /tmp/lease) router $router
        w_ping $router
    else
        say error no lease
    fi
}
ip link set lo up
addr=$(params kvt.ip)
if [ -n "$addr" ]; then ip link set eth0 up; ip addr add "$addr" dev eth0; say ip "$addr"; fi
gw=$(params kvt.gw)
[ -n "$gw" ] && ip route add default via "$gw"
for w in $(params kvt.work); do
    arg=${w#*:}; [ "$arg" = "$w" ] && arg=
    case "${w%%:*}" in
        ping) w_ping "$arg" & ;;
        counter) w_counter & ;;
        size) w_size & ;;
        dhcp) w_dhcp & ;;
        agent) w_agent & ;;
        ifaces) w_ifaces & ;;
        cpus) w_cpus & ;;
        mem) w_mem & ;;
        acpi) w_acpi ;;
        cloudinit) w_cloudinit ;;
        scan) w_scan ;;
        stamp) w_stamp "$arg" ;;
        poweroff) say poweroff; sync; reboot -f ;;  # on_reboot is destroy; PVH boot has no ACPI
        *) say error unknown workload "$w" ;;
    esac
done
say ready
while :; do sleep 3600; done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        echo "$ip" > /tmp/lease
        for r in $router; do
            ip route add default via "$r" dev "$interface"; echo "$r" > /tmp/router; break
        done
        ;;
esac
exit 0
"""


class GuestError(RuntimeError):
    pass


# --- the image -------------------------------------------------------------


def kernel_version():
    """The newest Debian kernel with its modules (``/boot/vmlinuz-V`` and ``/lib/modules/V``), or
    None."""
    found = []
    for path in pathlib.Path("/boot").glob("vmlinuz-*"):
        ver = path.name[len("vmlinuz-") :]
        if (pathlib.Path("/lib/modules") / ver / "modules.dep").exists():
            found.append(ver)
    return sorted(found)[-1] if found else None


def missing():
    """Why no guest can be built here (a sentence), or None."""
    if kernel_version() is None:
        return (
            "no Debian kernel with modules in /boot and /lib/modules (package linux-image-amd64; "
            "scripts/host-packages.txt)"
        )
    if not os.path.exists(BUSYBOX):
        return f"no {BUSYBOX} (package busybox-static; scripts/host-packages.txt)"
    return None


def module_order(moddir, wanted=WANTED_MODULES):
    """Paths (relative to ``moddir``) of ``wanted`` and what they depend on, dependencies first."""
    deps = {}
    for line in (pathlib.Path(moddir) / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
    by_name = {
        re.sub(r"\.ko(\.[a-z]+)?$", "", os.path.basename(m)).replace("-", "_"): m for m in deps
    }
    order = []

    def visit(mod):
        if mod in order:
            return
        for dep in deps[mod]:
            visit(dep)
        order.append(mod)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
        elif not _builtin(moddir, name):
            raise GuestError(
                f"kernel module {name} is neither in {moddir}/modules.dep nor built in"
            )
    return order


def _builtin(moddir, name):
    path = pathlib.Path(moddir) / "modules.builtin"
    return path.exists() and any(
        re.sub(r"\.ko$", "", os.path.basename(word)).replace("-", "_") == name
        for word in path.read_text().split()
    )


class _Cpio:
    """A ``newc`` cpio archive (what the kernel unpacks as an initramfs)."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
        self.ino += 1
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name_b)
        self.out.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def _module_bytes(path):
    data = pathlib.Path(path).read_bytes()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    return data


def build_initramfs(version):
    """The gzipped cpio bytes of the guest's initramfs for kernel ``version``."""
    moddir = f"/lib/modules/{version}"
    cpio = _Cpio()
    for d in (
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "tmp",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
    ):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/ttyS0", 4, 64)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", pathlib.Path(BUSYBOX).read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    names = []
    for rel in module_order(moddir):
        name = re.sub(r"\.ko(\.[a-z]+)?$", "", os.path.basename(rel))
        cpio.file(f"lib/modules/{name}.ko", _module_bytes(os.path.join(moddir, rel)))
        names.append(name)
    cpio.file("etc/kvt-modules", ("\n".join(names) + "\n").encode())
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


#: an ELF note ``Xen`` of type XEN_ELFNOTE_PHYS32_ENTRY (18): QEMU boots such an ELF kernel
#: directly (PVH)
_PVH_NOTES = tuple(struct.pack("<III4s", 4, size, 18, b"Xen\0") for size in (4, 8))


def unpacked_kernel(bzimage):
    """The ELF kernel inside ``bzimage`` (xz, gzip or zstd payload) if it has a PVH entry, else
    None."""
    data = pathlib.Path(bzimage).read_bytes()
    for magic, unpack in (
        (b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
        (b"\x1f\x8b\x08", lambda b: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b)),
    ):
        at = data.find(magic)
        if at < 0:
            continue
        try:
            elf = unpack(data[at:])
        except (lzma.LZMAError, zlib.error):
            continue
        if elf[:4] == b"\x7fELF" and any(note in elf for note in _PVH_NOTES):
            return elf
    return None


def _key(version):
    digest = hashlib.sha256()
    digest.update(json.dumps([BUILD, INIT, UDHCPC_SCRIPT, WANTED_MODULES]).encode())
    digest.update(pathlib.Path(BUSYBOX).read_bytes())
    return f"guest-{version}-{digest.hexdigest()[:12]}"


class Image:
    """The built kernel + initramfs (``kernel``, ``initrd`` paths) and what building it cost."""

    def __init__(self, directory, version, seconds, built):
        self.dir = pathlib.Path(directory)
        self.version = version
        self.kernel = str(self.dir / "vmlinuz")
        #: the compressed kernel, booted without PVH: slower under TCG, but with ACPI (a power
        #: button)
        self.bzimage = str(self.dir / "bzImage")
        self.initrd = str(self.dir / "initrd.img")
        self.seconds = seconds
        self.built = built

    def size(self):
        return os.path.getsize(self.kernel) + os.path.getsize(self.initrd)

    def __repr__(self):
        return (
            f"<guest image {self.version}: kernel {os.path.getsize(self.kernel) // 1024} KiB, "
            f"initramfs {os.path.getsize(self.initrd) // 1024} KiB, "
            f"{'built' if self.built else 'cached'} in {self.seconds:.2f}s>"
        )


def image():
    """The cached guest image, built now if this kernel and this file have none yet."""
    why = missing()
    if why:
        raise GuestError(why)
    start = time.monotonic()
    version = kernel_version()
    target = CACHE / _key(version)
    if (target / "initrd.img").exists():
        return Image(target, version, time.monotonic() - start, False)
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(CACHE, 0o755)  # libvirt's qemu user reads the kernel and initramfs from here
    tmp = CACHE / f".{target.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    # a copy: /boot/vmlinuz-* is 0600 root, and libvirt would relabel the original for each VM.
    # Under TCG, unpacking the compressed kernel takes ~10 s of every boot: where the kernel
    # allows it, the guest boots the unpacked ELF kernel through its PVH entry instead.
    vmlinux = unpacked_kernel(f"/boot/vmlinuz-{version}")
    shutil.copyfile(f"/boot/vmlinuz-{version}", tmp / "bzImage")
    if vmlinux is not None:
        (tmp / "vmlinuz").write_bytes(vmlinux)
    else:
        shutil.copyfile(f"/boot/vmlinuz-{version}", tmp / "vmlinuz")
    (tmp / "initrd.img").write_bytes(build_initramfs(version))
    for f in tmp.iterdir():
        f.chmod(0o644)
    try:
        tmp.rename(target)
    except OSError:  # another session built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    for old in CACHE.glob("guest-*"):  # images of older kernels or init scripts, unused for a week
        if old != target and time.time() - old.stat().st_mtime > 7 * 86400:
            shutil.rmtree(old, ignore_errors=True)
    return Image(target, version, time.monotonic() - start, True)


#: the packages of each :func:`rootfs` variant beyond debootstrap's minbase, and the size of
#: its ext4 filesystem. ``agent`` (a 215 MiB qcow2) runs ``qemu-guest-agent``;
#: ``cloud-init`` (a 352 MiB qcow2: Python 3 and cloud-init's dependencies; built in
#: 3 min 39 s here, once) runs a real ``cloud-init`` (22.4.2 in bookworm).
ROOTFS_VARIANTS = {
    "agent": (("qemu-guest-agent",), "512M"),
    # python3-cffi-backend: debootstrap does not resolve the virtual packages python3-cryptography
    # needs
    "cloud-init": (("qemu-guest-agent", "cloud-init", "python3-cffi-backend"), "1G"),
}
#: bump when the way a rootfs variant is built changes (the ``agent`` variant keeps its old key)
ROOTFS_BUILD = 1


def rootfs(variant="agent"):
    """A cached qcow2 image of a small Debian root filesystem (ext4, no partition table), built
    once with ``debootstrap`` from the machine's configured mirror: :data:`ROOTFS_VARIANTS`
    names the packages of each variant (``agent``: ``qemu-guest-agent``; ``cloud-init``: also
    ``cloud-init``)."""
    mirror = _mirror()
    packages, fs_size = ROOTFS_VARIANTS[variant]
    if variant == "agent":
        key_parts = [BUILD, mirror, "bookworm", "minbase", "qemu-guest-agent"]
    else:
        key_parts = [
            BUILD,
            ROOTFS_BUILD,
            mirror,
            "bookworm",
            "minbase",
            ",".join(packages),
            fs_size,
        ]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:12]
    target = CACHE / f"rootfs-{key}.qcow2"
    if target.exists():
        return str(target)
    if not shutil.which("debootstrap"):
        raise GuestError("no debootstrap (package debootstrap; scripts/host-packages.txt)")
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = CACHE / f".rootfs-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                "bookworm",
                str(tmp),
                mirror,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        raw = f"{tmp}.raw"
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", "kvt-root", "-d", str(tmp), raw, fs_size],
            check=True,
            capture_output=True,
            timeout=600,
        )
        sandbox.qemu_img("convert", "-O", "qcow2", raw, f"{tmp}.qcow2")
        os.chmod(f"{tmp}.qcow2", 0o644)
        os.rename(f"{tmp}.qcow2", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(f"{tmp}.raw")
    return str(target)


def _mirror():
    """The Debian mirror apt uses on this machine."""
    for path in [
        "/etc/apt/sources.list",
        *sorted(str(p) for p in pathlib.Path("/etc/apt/sources.list.d").glob("*")),
    ]:
        with contextlib.suppress(OSError):
            for line in pathlib.Path(path).read_text().splitlines():
                m = re.match(r"^\s*(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(\S+/debian)/?(\s|$)", line)
                if m:
                    return m.group(1)
    return "http://deb.debian.org/debian"


# --- domains ---------------------------------------------------------------


def domain_xml(
    name,
    img,
    console,
    work=(),
    dtype="qemu",
    disks=(),
    nics=(),
    ip=None,
    gw=None,
    memory_mib=MEMORY_MIB,
    extra_cmdline="",
    agent_channel=False,
):
    """A guest's libvirt XML.

    ``disks``: ``(path, format)`` pairs (vda, vdb, ...); ``nics``: dicts with ``bridge`` or
    ``network`` and optionally ``mac``; ``agent_channel``: the QEMU guest agent's virtio-serial
    channel (this guest runs no agent on it).
    """
    # no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check can fail and panic
    cmdline = ["console=ttyS0", "quiet", "panic=-1", "no_timer_check"]
    if ip:
        cmdline.append(f"kvt.ip={ip}")
    if gw:
        cmdline.append(f"kvt.gw={gw}")
    cmdline += [f"kvt.work={w}" for w in work]
    if extra_cmdline:
        cmdline.append(extra_cmdline)
    dom = etree.Element("domain", type=dtype)
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    etree.SubElement(dom, "vcpu").text = "1"
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    etree.SubElement(os_el, "kernel").text = img.kernel
    etree.SubElement(os_el, "initrd").text = img.initrd
    etree.SubElement(os_el, "cmdline").text = " ".join(cmdline)
    etree.SubElement(dom, "on_poweroff").text = "destroy"
    etree.SubElement(dom, "on_reboot").text = "destroy"
    etree.SubElement(dom, "on_crash").text = "destroy"
    devices = etree.SubElement(dom, "devices")
    for i, (path, fmt) in enumerate(disks):
        disk_el = etree.SubElement(devices, "disk", type="file", device="disk")
        etree.SubElement(disk_el, "driver", name="qemu", type=fmt, cache="none")
        etree.SubElement(disk_el, "source", file=path)
        etree.SubElement(disk_el, "target", dev=f"vd{chr(ord('a') + i)}", bus="virtio")
    for nic in nics:
        iface = etree.SubElement(
            devices, "interface", type="bridge" if "bridge" in nic else "network"
        )
        etree.SubElement(
            iface,
            "source",
            **({"bridge": nic["bridge"]} if "bridge" in nic else {"network": nic["network"]}),
        )
        if nic.get("mac"):
            etree.SubElement(iface, "mac", address=nic["mac"])
        etree.SubElement(iface, "model", type="virtio")
    if agent_channel:
        channel = etree.SubElement(devices, "channel", type="unix")
        etree.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    serial = etree.SubElement(devices, "serial", type="file")
    etree.SubElement(serial, "source", path=console, append="on")
    etree.SubElement(serial, "target", port="0")
    etree.SubElement(devices, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


class Guest:
    """A running (or defined) guest and its console."""

    def __init__(self, dom, console):
        self.dom = dom
        self.name = dom.name()
        self.console = console

    def text(self, since=0):
        try:
            with open(self.console, "rb") as fh:
                fh.seek(since)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def offset(self):
        try:
            return os.path.getsize(self.console)
        except FileNotFoundError:
            return 0

    def lines(self, since=0):
        """The ``KVT`` lines (without the prefix) written after byte ``since``."""
        out = []
        for line in self.text(since).splitlines():
            line = line.strip("\r\0 ")
            m = LINE.search(line)
            if m:
                out.append(m.group(1))
        return out

    def wait(self, predicate, timeout=60, since=0, what="a console line"):
        """Wait until ``predicate(lines)`` is true; return its value."""
        end = time.monotonic() + timeout
        while True:
            value = predicate(self.lines(since))
            if value:
                return value
            if time.monotonic() > end:
                tail = "\n".join(self.text().splitlines()[-25:])
                raise GuestError(
                    f"guest {self.name}: no {what} within {timeout}s; console ends:\n{tail}"
                )
            time.sleep(0.1)

    def wait_line(self, prefix, timeout=60, since=0):
        """The first line starting with ``prefix`` after ``since``, waited for."""

        def find(lines):
            return next((line for line in lines if line.startswith(prefix)), None)

        return self.wait(find, timeout=timeout, since=since, what=f"'KVT {prefix}' line")

    def mismatches(self, since=0):
        return [line for line in self.lines(since) if line.startswith("MISMATCH")]

    def counters(self, since=0):
        """Acknowledged counter values written after ``since``, in console order."""
        return [int(line.split()[1]) for line in self.lines(since) if line.startswith("counter ")]

    def wait_counter(self, n=1, since=0, timeout=60):
        """The last counter value once ``n`` ticks were seen after ``since``."""
        return self.wait(
            lambda lines: (
                [int(line.split()[1]) for line in lines if line.startswith("counter ")][n - 1 :]
                and self.counters(since)[-1]
            ),
            timeout=timeout,
            since=since,
            what=f"{n} counter ticks",
        )

    def ping_seqs(self, since=0, source=None):
        """Sequence numbers of the ping replies (from ``source``, or any) the guest got after byte
        ``since``."""
        return [
            int(m.group(2))
            for m in PING_REPLY.finditer(self.text(since))
            if source in (None, m.group(1))
        ]

    def wait_replies(self, n=3, since=0, timeout=60, source=None):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            seqs = self.ping_seqs(since, source)
            if len(seqs) >= n:
                return seqs
            time.sleep(0.1)
        tail = "\n".join(self.text().splitlines()[-25:])
        raise GuestError(
            f"guest {self.name}: fewer than {n} ping replies within {timeout}s; console "
            f"ends:\n{tail}"
        )


def longest_gap(seqs, interval=INTERVAL):
    """The longest run of lost pings between replies ``seqs``, in seconds (0 when none was lost)."""
    seqs = sorted(set(seqs))
    lost = max((b - a - 1 for a, b in zip(seqs, seqs[1:])), default=0)
    return lost * interval


# --- networks in the root namespace (where libvirtd puts VM taps) ----------


def _used_subnets(conn):
    from salt_kvm.network import _host_routes  # pylint: disable=import-outside-toplevel
    from salt_kvm.xml.network import Network  # pylint: disable=import-outside-toplevel

    used = [net for _iface, net in _host_routes()]
    for net in conn.listAllNetworks(0):
        with contextlib.suppress(Exception):
            for item in Network(net.XMLDesc(0)).ips():
                if item.interface:
                    used.append(ipaddress.ip_interface(item.interface).network)
    return used


def free_subnet(conn, prefixlen=28, taken=()):
    """A subnet of the root namespace's documentation range that no route or libvirt network uses
    (or None)."""
    used = _used_subnets(conn) + list(taken)
    for cand in reversed(
        list(ipaddress.ip_network(sandbox.ROOT_NS_RANGE).subnets(new_prefix=prefixlen))
    ):
        if not any(cand.overlaps(u) for u in used):
            return cand
    return None


class RootLan:
    """A ``kvt-`` uplink veth in the root namespace whose peer ``lan0`` sits in a LAN namespace
    holding ``gateway``; the guest's bridge is in the root namespace (where libvirtd puts taps)."""

    def __init__(self, net):
        self.net = net
        self.uplink = sandbox.uid("up-")
        self.ns = sandbox.uid("lan-")
        self.bridge = sandbox.uid("gb-")
        self.gateway = str(net[1])
        self.host = f"{net[2]}/{net.prefixlen}"
        self.guest = f"{net[3]}/{net.prefixlen}"

    def create(self):
        from pyroute2 import IPRoute, NetNS, netns  # pylint: disable=import-outside-toplevel

        netns.create(self.ns)
        with IPRoute() as ipr:
            ipr.link(
                "add",
                ifname=self.uplink,
                kind="veth",
                peer={"ifname": "lan0", "net_ns_fd": self.ns},
            )
            ipr.link("set", index=ipr.link_lookup(ifname=self.uplink)[0], state="up")
        with NetNS(self.ns) as lan:
            lan.link("set", index=lan.link_lookup(ifname="lo")[0], state="up")
            idx = lan.link_lookup(ifname="lan0")[0]
            lan.addr("add", index=idx, address=self.gateway, prefixlen=self.net.prefixlen)
            lan.link("set", index=idx, state="up")
        return self

    def remove(self):
        from pyroute2 import IPRoute, netns  # pylint: disable=import-outside-toplevel

        with IPRoute() as ipr:
            for name in (self.bridge, self.uplink):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
        with contextlib.suppress(Exception):
            netns.remove(self.ns)


# --- KVM or TCG ------------------------------------------------------------


def _probe_key(img):
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line
                for line in open("/proc/cpuinfo", encoding="utf-8")
                if line.startswith("model name")
            ),
            "",
        )
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    raw = json.dumps([os.uname().release, cpu, qemu, img.version, os.path.getsize(img.kernel)])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def domain_type(conn, img, timeout=20):
    """``kvm`` when a KVM guest boots this kernel here, else ``qemu`` (TCG). Probed once, cached.

    ``KVT_GUEST_TYPE`` (kvm or qemu) overrides the probe.
    """
    forced = os.environ.get("KVT_GUEST_TYPE")
    if forced:
        return forced
    if not os.path.exists("/dev/kvm"):
        return "qemu"
    path = CACHE / f"probe-{_probe_key(img)}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())["type"]
    name = sandbox.uid("probe-")
    directory = sandbox.files_dir(name)
    console = os.path.join(directory, "console.log")
    result = "qemu"
    try:
        dom = conn.createXML(domain_xml(name, img, console, dtype="kvm"), 0)
        guest = Guest(dom, console)
        with contextlib.suppress(GuestError):
            if guest.wait_line("ready", timeout=timeout):
                result = "kvm"
    except Exception:  # noqa: BLE001  # pylint: disable=broad-except
        result = "qemu"
    finally:
        sandbox.remove_vm(conn, name)
        shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        path.write_text(json.dumps({"type": result, "probed": time.time()}))
    return result


def start(
    conn,
    img,
    dtype,
    name=None,
    work=(),
    disks=(),
    nics=(),
    ip=None,
    gw=None,
    define=False,
    wait_ready=True,
    **kw,
):
    """Define and start a guest; return a :class:`Guest` (its console file is in its own files dir).

    ``define``: a persistent domain (snapshots need one); otherwise a transient one.
    """
    name = name or sandbox.uid("g-")
    directory = sandbox.files_dir(name)
    console = os.path.join(directory, "console.log")
    xml = domain_xml(
        name, img, console, work=work, dtype=dtype, disks=disks, nics=nics, ip=ip, gw=gw, **kw
    )
    if define:
        dom = conn.defineXML(xml)
        dom.create()
    else:
        dom = conn.createXML(xml, 0)
    guest = Guest(dom, console)
    if wait_ready:
        guest.wait_line("ready", timeout=120 if dtype == "qemu" else 30)
    return guest


def disk(directory, name="disk.qcow2", size="64M", fmt="qcow2"):
    path = os.path.join(directory, name)
    sandbox.qemu_img("create", "-q", "-f", fmt, path, size)
    return path


def read_sectors(path, first=0, count=1, fmt="qcow2"):
    """The text in ``count`` sectors of an image from ``first`` on, as the counter wrote them
    (``qemu-io -r -U``)."""
    out = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", fmt, "-c", f"read -v {first * 512} {count * 512}", path],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    data = bytearray()
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]{8}:\s+((?:[0-9a-f]{2}\s){1,16})", line)
        if m:
            data += bytes.fromhex(m.group(1).replace(" ", ""))
    assert len(data) == count * 512, out[-500:]
    return [
        bytes(data[i : i + 512]).replace(b"\0", b"").decode(errors="replace").strip()
        for i in range(0, len(data), 512)
    ]


def read_sector(path, sector, fmt="qcow2"):
    """The text in one sector of an image."""
    return read_sectors(path, sector, 1, fmt)[0]


def check_counter_image(path, acknowledged, fmt="qcow2"):
    """Which of the ``acknowledged`` counter values the image (of a stopped guest) lost: a value
    N lives in sector 0 (the newest) and in slot ``1 + N % 256`` until N + 256 overwrites it."""
    sectors = read_sectors(path, 0, 257, fmt)
    newest = int(sectors[0] or 0)
    lost = [
        n
        for n in acknowledged[-256:]
        if not (
            sectors[1 + n % 256].isdigit()
            and int(sectors[1 + n % 256]) >= n
            and int(sectors[1 + n % 256]) % 256 == n % 256
        )
    ]
    if acknowledged and newest < acknowledged[-1]:
        lost.append(f"sector 0 holds {newest}, the last acknowledged write was {acknowledged[-1]}")
    return lost
