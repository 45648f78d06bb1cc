"""Userspace storage servers on 127.0.0.1 that make network pool types real.

* :class:`Tgt`: ``tgtd`` (Debian ``tgt``) exporting file-backed LUNs as one
  iSCSI target, for ``iscsi-direct`` pools (libvirt's libiscsi initiator, no
  kernel iSCSI needed).
* :class:`Gluster`: ``glusterd`` bound to 127.0.0.1 with one single-brick
  volume, for ``gluster`` pools (libgfapi) and ``netfs`` pools of format
  ``glusterfs`` (a FUSE mount).
* Ceph for ``rbd`` pools lives in :mod:`tests.support.ceph`.

Each listens on 127.0.0.1 only, names everything ``kvt-...``, keeps its files
under :data:`sandbox.FILES_ROOT` and removes them on :meth:`stop`. When a server
cannot be brought up here, :meth:`start` raises :class:`Unavailable` naming the
command and its error, so a test can skip with exactly that.
"""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time

from lxml import etree

from tests.support import sandbox

M = 1024**2
IQN_PREFIX = "iqn.2026-11.test.kvt"


class Unavailable(Exception):
    """A server (or a libvirt backend) this machine cannot provide; the message says what failed."""


def run(cmd, timeout=60, input=None, check=True):  # pylint: disable=redefined-builtin
    """Run ``cmd``; on failure raise :class:`Unavailable` with the command and its error."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"`{' '.join(cmd)}` failed: {exc}") from None
    if check and proc.returncode != 0:
        err = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise Unavailable(f"`{' '.join(cmd)}` exited {proc.returncode}: {' | '.join(err[-3:])}")
    return proc


def port_in_use(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(start):
    port = start
    while port_in_use(port):
        port += 1
    return port


def stop_process(proc, timeout=15):
    """Terminate a child we started, then kill it if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def wait_until(predicate, timeout, what):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise Unavailable(f"{what} (waited {timeout} s)")
        time.sleep(0.1)


def backend_missing(conn, ptype):
    """Why libvirtd here cannot define a pool of ``ptype`` (its storage backend is not loaded), or
    ``None``."""
    import libvirt  # pylint: disable=import-outside-toplevel

    probe = sandbox.uid("probe-")
    pool = etree.Element("pool", type=ptype)
    etree.SubElement(pool, "name").text = probe
    src = etree.SubElement(pool, "source")
    etree.SubElement(src, "host", name="127.0.0.1")
    etree.SubElement(src, "name").text = "x"
    etree.SubElement(src, "device", path=f"{IQN_PREFIX}:t")
    etree.SubElement(etree.SubElement(src, "initiator"), "iqn", name=f"{IQN_PREFIX}:i")
    try:
        conn.storagePoolDefineXML(etree.tostring(pool, encoding="unicode"), 0).undefine()
    except libvirt.libvirtError as exc:
        msg = exc.get_error_message()
        if "missing backend" in msg:
            return (
                f"libvirtd here has no {ptype} storage backend (install "
                f"libvirt-daemon-driver-storage-{ptype} and restart libvirtd): {msg}"
            )
    return None


# --- iSCSI: tgtd -------------------------------------------------------------------


class Server:
    """A server a test starts on 127.0.0.1: ``with Server() as srv`` starts it and
    always stops it (also when starting fails half-way)."""

    def start(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


class Tgt(Server):
    """``tgtd`` in the foreground on 127.0.0.1 with one target of file-backed LUNs.

    The portal is 127.0.0.1:3260, or the next free port when something already
    listens there; its management socket uses a control port of its own, so a
    tgtd that is already running is left alone.
    """

    def __init__(self, lun_sizes=(64 * M, 32 * M)):
        self.name = sandbox.uid("tgt-")
        self.iqn = f"{IQN_PREFIX}:{self.name}"
        self.lun_sizes = lun_sizes
        self.dir = None
        self.port = None
        self.control = None
        self.proc = None

    @property
    def host(self):
        return "127.0.0.1" if self.port == 3260 else f"127.0.0.1:{self.port}"

    def adm(self, *args, check=True):
        return run(["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args], check=check)

    def start(self):
        if not shutil.which("tgtd"):
            raise Unavailable("tgtd is not installed (apt-get install tgt)")
        self.dir = sandbox.files_dir(self.name)
        self.port = free_port(3260)
        self.control = next(
            n for n in range(1, 100) if not os.path.exists(f"/var/run/tgtd/socket.{n}")
        )
        cmd = ["tgtd", "-f", "-C", str(self.control), "--iscsi", f"portal=127.0.0.1:{self.port}"]
        with open(os.path.join(self.dir, "tgtd.log"), "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with

        def up():
            if self.proc.poll() is not None:
                raise Unavailable(f"`{' '.join(cmd)}` exited {self.proc.returncode}: {self._log()}")
            return port_in_use(self.port) and os.path.exists(f"/var/run/tgtd/socket.{self.control}")

        wait_until(up, 15, f"`{' '.join(cmd)}` did not listen on 127.0.0.1:{self.port}")
        self.adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", self.iqn)
        for lun, size in enumerate(self.lun_sizes, start=1):
            path = os.path.join(self.dir, f"lun{lun}.img")
            with open(path, "wb") as fh:
                fh.truncate(size)
            self.adm(
                "--mode",
                "logicalunit",
                "--op",
                "new",
                "--tid",
                "1",
                "--lun",
                str(lun),
                "--backing-store",
                path,
            )
        self.adm(
            "--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "127.0.0.1"
        )
        return self

    def _log(self):
        try:
            with open(os.path.join(self.dir, "tgtd.log"), encoding="utf-8", errors="replace") as fh:
                return " | ".join(fh.read().strip().splitlines()[-3:]) or "(no output)"
        except OSError:
            return "(no log)"

    def lun_digest(self, lun):
        import hashlib  # pylint: disable=import-outside-toplevel

        with open(os.path.join(self.dir, f"lun{lun}.img"), "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.adm("--mode", "target", "--op", "delete", "--force", "--tid", "1", check=False)
            run(
                ["tgtadm", "-C", str(self.control), "--op", "delete", "--mode", "system"],
                check=False,
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        stop_process(self.proc)
        self.proc = None
        if self.control is not None:
            for path in glob.glob(f"/var/run/tgtd/socket.{self.control}*"):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- Gluster: glusterd ----------------------------------------------------------------


GLUSTERD_PORT = 24007
GLUSTER_RUN = "/var/run/gluster"
GLUSTER_LOG = "/var/log/glusterfs"


class Gluster(Server):
    """``glusterd`` bound to 127.0.0.1 with its own working directory, and one
    started single-brick volume :attr:`volume` (``$(hostname):<dir>/brick force``)."""

    def __init__(self):
        self.name = sandbox.uid("gl-")
        self.volume = self.name
        self.dir = None
        self.proc = None
        self._run_before = set()

    def cli(self, *args, timeout=60, check=True):
        return run(["gluster", "--mode=script", *args], timeout=timeout, check=check)

    def start(self):
        for tool in ("glusterd", "gluster"):
            if not shutil.which(tool):
                raise Unavailable(f"{tool} is not installed (apt-get install glusterfs-server)")
        if port_in_use(GLUSTERD_PORT):
            raise Unavailable(
                f"a glusterd already listens on 127.0.0.1:{GLUSTERD_PORT}; not starting a second "
                "one"
            )
        self._run_before = set(glob.glob(os.path.join(GLUSTER_RUN, "*.socket")))
        self.dir = sandbox.files_dir(self.name)
        brick = os.path.join(self.dir, "brick")
        for sub in ("wd", "brick", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        vol = os.path.join(self.dir, "glusterd.vol")
        with open(vol, "w", encoding="utf-8") as fh:
            fh.write(
                "volume management\n"
                "    type mgmt/glusterd\n"
                f"    option working-directory {self.dir}/wd\n"
                "    option transport-type socket\n"
                "    option transport.socket.bind-address 127.0.0.1\n"
                f"    option transport.socket.listen-port {GLUSTERD_PORT}\n"
                "    option transport.socket.read-fail-log off\n"
                "    option ping-timeout 0\n"
                "    option event-threads 1\n"
                "end-volume\n"
            )
        cmd = ["glusterd", "-N", "-f", vol, "-l", os.path.join(self.dir, "log", "glusterd.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # pylint: disable=consider-using-with

        def up():
            if self.proc.poll() is not None:
                raise Unavailable(f"`{' '.join(cmd)}` exited {self.proc.returncode}: {self._log()}")
            return (
                port_in_use(GLUSTERD_PORT)
                and self.cli("volume", "list", check=False).returncode == 0
            )

        wait_until(up, 30, f"`{' '.join(cmd)}` did not answer on 127.0.0.1:{GLUSTERD_PORT}")
        self.cli("volume", "create", self.volume, f"{socket.gethostname()}:{brick}", "force")
        self.cli("volume", "start", self.volume)
        return self

    def _log(self):
        try:
            with open(
                os.path.join(self.dir, "log", "glusterd.log"), encoding="utf-8", errors="replace"
            ) as fh:
                return " | ".join(fh.read().strip().splitlines()[-3:]) or "(empty log)"
        except OSError:
            return "(no log)"

    @contextlib.contextmanager
    def mounted(self):
        """The volume FUSE-mounted (``mount -t glusterfs``) at a private directory."""
        mnt = os.path.join(self.dir, "mnt")
        os.makedirs(mnt, exist_ok=True)
        run(["mount", "-t", "glusterfs", f"127.0.0.1:/{self.volume}", mnt])
        try:
            yield mnt
        finally:
            run(["umount", mnt], check=False)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.cli("volume", "stop", self.volume, "force", check=False)
            self.cli("volume", "delete", self.volume, check=False)
        stop_process(self.proc)
        self.proc = None
        if self.dir:
            slug = self.dir.strip("/").replace("/", "-")
            for path in glob.glob(os.path.join(GLUSTER_LOG, "**", f"{slug}*.log"), recursive=True):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            shutil.rmtree(os.path.join(GLUSTER_RUN, "vols", self.volume), ignore_errors=True)
            for path in set(glob.glob(os.path.join(GLUSTER_RUN, "*.socket"))) - self._run_before:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if os.path.ismount(os.path.join(self.dir, "mnt")):
                run(["umount", "-l", os.path.join(self.dir, "mnt")], check=False)
            shutil.rmtree(self.dir, ignore_errors=True)
