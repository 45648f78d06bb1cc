"""A one-monitor, one-OSD Ceph cluster on 127.0.0.1 for the RBD pool tests.

Adapted from ``../shared/testing/ceph-up.sh``, with cephx on (the pool must
authenticate with a key that comes from pillar): the monitor listens on
127.0.0.1:3300 (msgr2) and 127.0.0.1:6789 (msgr1), the OSD is bluestore on a
sparse 2 GB file. Everything (config, keyrings, data, logs, admin sockets, pid
files) lives in one ``kvt-`` directory under :data:`sandbox.FILES_ROOT`; both
daemons run in the foreground as children of the test process, so
:meth:`Ceph.stop` stops them and removes that directory.

Debian packages: ceph-mon ceph-osd ceph-common (and
libvirt-daemon-driver-storage-rbd for libvirt to use it).
"""

import os
import shutil
import subprocess
import time
import uuid

from tests.support import sandbox
from tests.support.storage_servers import Server, Unavailable, port_in_use, run, stop_process

MON_PORTS = (3300, 6789)


class Ceph(Server):
    """``Ceph().start()``: a cluster with the RBD pool :attr:`pool` and the client
    :attr:`user` (caps ``profile rbd`` on that pool) whose key is :attr:`key`."""

    def __init__(self, tag=None):
        self.name = tag or sandbox.uid("ceph-")
        self.dir = None
        self.pool = sandbox.register(f"{self.name}-rbd")
        self.user = sandbox.register(f"{self.name}-lv")  # client.<user>
        self.key = None
        self.procs = []

    @property
    def conf(self):
        return os.path.join(self.dir, "ceph.conf")

    def ceph(self, *args, timeout=60):
        return run(["ceph", "-c", self.conf, *args], timeout=timeout)

    def rbd(self, *args, timeout=60):
        return run(["rbd", "-c", self.conf, *args], timeout=timeout)

    def _write_conf(self, fsid):
        d = self.dir
        text = f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
mon cluster log file = {d}/log/$cluster.$channel.log
pid file = {d}/run/$name.pid
keyring = {d}/keyring
[mon.a]
mon data = {d}/mon
[osd.0]
osd data = {d}/osd0
keyring = {d}/osd0/keyring
bluestore block path = {d}/osd0-block
bluestore block create = true
bluestore block size = 2147483648
osd memory target = 1073741824
"""
        with open(self.conf, "w", encoding="utf-8") as fh:
            fh.write(text)

    def _daemon(self, *args):
        log = open(os.path.join(self.dir, "log", f"{args[0]}.out"), "wb")  # pylint: disable=consider-using-with
        proc = subprocess.Popen(
            [*args, "-f", "-c", self.conf], stdout=log, stderr=subprocess.STDOUT
        )  # pylint: disable=consider-using-with
        log.close()
        self.procs.append(proc)
        return proc

    def start(self):
        for tool in ("ceph-mon", "ceph-osd", "ceph", "rbd", "ceph-authtool", "monmaptool"):
            if not shutil.which(tool):
                raise Unavailable(
                    f"{tool} is not installed (apt-get install ceph-mon ceph-osd ceph-common)"
                )
        busy = [p for p in MON_PORTS if port_in_use(p)]
        if busy:
            raise Unavailable(
                f"something already listens on 127.0.0.1:{busy[0]} (a Ceph monitor?); not "
                "starting a second one"
            )
        self.dir = sandbox.files_dir(self.name)
        for sub in ("mon", "osd0", "run", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        fsid = str(uuid.uuid4())
        self._write_conf(fsid)
        keyring = os.path.join(self.dir, "keyring")
        run(
            [
                "ceph-authtool",
                "--create-keyring",
                keyring,
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ]
        )
        run(
            [
                "ceph-authtool",
                keyring,
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ]
        )
        monmap = os.path.join(self.dir, "monmap")
        run(
            [
                "monmaptool",
                "--create",
                "--addv",
                "a",
                "[v2:127.0.0.1:3300,v1:127.0.0.1:6789]",
                "--fsid",
                fsid,
                monmap,
            ]
        )
        run(
            [
                "ceph-mon",
                "-c",
                self.conf,
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                monmap,
                "--keyring",
                keyring,
            ]
        )
        mon = self._daemon("ceph-mon", "-i", "a")
        end = time.monotonic() + 30
        while not port_in_use(6789):
            if mon.poll() is not None or time.monotonic() > end:
                raise Unavailable(f"ceph-mon -i a did not come up: {self._log_tail('mon.a.log')}")
            time.sleep(0.1)
        osd_uuid = str(uuid.uuid4())
        osd_key = run(["ceph-authtool", "--gen-print-key"]).stdout.strip()
        run(
            ["ceph", "-c", self.conf, "osd", "new", osd_uuid, "-i", "-"],
            input=f'{{"cephx_secret": "{osd_key}"}}',
        )
        run(
            [
                "ceph-authtool",
                "--create-keyring",
                os.path.join(self.dir, "osd0", "keyring"),
                "-n",
                "osd.0",
                "--add-key",
                osd_key,
            ]
        )
        run(["ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], timeout=120)
        self._daemon("ceph-osd", "-i", "0")
        self.ceph("osd", "pool", "create", self.pool, "8")
        self.rbd("pool", "init", self.pool, timeout=120)
        self.key = self.ceph(
            "auth",
            "get-or-create-key",
            f"client.{self.user}",
            "mon",
            "profile rbd",
            "osd",
            f"profile rbd pool={self.pool}",
        ).stdout.strip()
        return self

    def _log_tail(self, name):
        try:
            with open(
                os.path.join(self.dir, "log", name), encoding="utf-8", errors="replace"
            ) as fh:
                return " | ".join(fh.read().strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def images(self):
        return self.rbd("ls", self.pool).stdout.split()

    def stop(self):
        for proc in reversed(self.procs):  # the OSD first, then the monitor
            stop_process(proc)
        self.procs = []
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
