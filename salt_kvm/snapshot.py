"""VM snapshots: every kind, a real tree, safe delete and revert, retention.

Entry points (named after the loader functions): :func:`snapshot_list`,
:func:`snapshot_show`, :func:`snapshot_tree`, :func:`snapshot_create`,
:func:`snapshot_revert`, :func:`snapshot_delete`, :func:`snapshot_prune` and the
states :func:`snapshot_present` (:class:`SnapshotResource`),
:func:`snapshot_absent` and :func:`snapshots_retained`
(:class:`RetentionResource`).

Kinds (what :func:`snapshot_create` takes, by the VM's state):

* running VM, defaults: **internal** snapshot of the disks and the RAM, inside
  the qcow2 images (state ``running``);
* running VM, ``memory=False``, ``disk_only=True`` or ``quiesce=True``:
  **external disk-only** snapshot: new qcow2 overlays take the writes, the old
  images become their read-only backing files (state ``disk-snapshot``);
* running VM, ``external=True``: **external with a memory file** beside the
  first disk (state ``running``);
* shut-off VM, defaults: **internal** disk snapshot (state ``shutoff``);
* shut-off VM, ``external=True``: **external** overlays (state ``shutoff``).

libvirt 9.0 (Debian 12) cannot revert to external snapshots and refuses to
delete many of them ("deleting external snapshot that has internal snapshot as
parent not supported"). salt-kvm does both itself:

* **delete** of an external snapshot first asks libvirt; when libvirt refuses,
  the overlay is merged into the image below it (an active block commit and a
  pivot for a running VM, ``qemu-img commit`` / ``rebase`` for a stopped one),
  the VM definition and the metadata of later snapshots are pointed at the
  merged image, the overlay and memory files are removed and the snapshot's
  metadata is dropped. The VM keeps its newest data; deleting the only external
  snapshot leaves the VM on its original image.
* **revert** to an external snapshot stops the VM, empties the snapshot's
  overlays (the images below them hold the data as it was) and, for a snapshot
  with a memory file, restores the RAM.

Combinations that would break later are refused up front, with the reason:
an internal snapshot on top of an external overlay (it would live inside a
file that a later merge removes, and libvirt cannot delete it while the VM
runs), reverting to an internal snapshot that external snapshots build on (it
would rewrite their base image under them), and reverting to an external
snapshot that newer external snapshots build on (their data would be lost).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional, cast

from salt_kvm import conn as _conn
from salt_kvm import depends, schema, units
from salt_kvm import progress as _progress
from salt_kvm.conn import libvirt_errors
from salt_kvm.errors import InvalidInput, KvmError, NotFound, Refused
from salt_kvm.plan import Changes, Plan, Resource, Undo, ensure, state_return
from salt_kvm.plan import absent as _plan_absent
from salt_kvm.xml import snapshot as xsnap
from salt_kvm.xml.domain import Domain

log = logging.getLogger(__name__)

#: session.memo keys: ``memo_key("snapshot", "list", vm)``, all dropped with this prefix
MEMO_PREFIX = _conn.memo_key("snapshot", "")
DEFAULT_PREFIX = "auto-"
NAME_FORMAT = "%Y%m%d-%H%M%S"
#: how long a block commit may take before salt-kvm gives up waiting (seconds)
BLOCK_JOB_TIMEOUT = 3600
QEMU_IMG_TIMEOUT = 3600

INTERNAL = xsnap.INTERNAL
EXTERNAL = xsnap.EXTERNAL


def _lv() -> Any:
    return _conn.libvirt


def _err(exc: Any) -> str:
    return _conn.libvirt_message(exc)


# --- reading ---------------------------------------------------------------


def _domain(session, vm):
    schema.validate(schema.OBJNAME, vm, "vm")
    return _conn.lookup_domain(session, vm)


def _iso(ts):
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Entry:
    """One snapshot: the libvirt object, its parsed XML and whether it is current."""

    def __init__(self, obj: Any, model: xsnap.Snapshot, current: bool) -> None:
        self.obj, self.model, self.current = obj, model, current

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def created(self) -> int:
        return self.model.created or 0

    def base_images(self) -> dict[str, tuple[Optional[str], Optional[str]]]:
        """``{target: (image, format)}``: the image each disk used when this snapshot was
        taken."""
        dom = self.model.domain
        out: dict[str, tuple[Optional[str], Optional[str]]] = {}
        if dom is None:
            return out
        for disk in dom.disks:
            if disk.is_snapshottable:
                out[cast(str, disk.target)] = (disk.source, disk.format)
        return out

    def overlays(self) -> dict[str, str]:
        """``{target: file}`` of the external overlays this snapshot created."""
        return {cast(str, d.name): d.file for d in self.model.external_disks if d.file}

    def describe(self, children: Iterable[str] = ()) -> dict[str, Any]:
        model = self.model
        bases = self.base_images()
        disks = []
        for disk in model.disks:
            if disk.snapshot == EXTERNAL:
                disks.append(
                    {
                        "disk": disk.name,
                        "kind": EXTERNAL,
                        "file": disk.file,
                        "base": bases.get(cast(str, disk.name), (None, None))[0],
                    }
                )
            elif disk.snapshot == INTERNAL or disk.snapshot is None:
                disks.append(
                    {
                        "disk": disk.name,
                        "kind": INTERNAL,
                        "file": bases.get(cast(str, disk.name), (None, None))[0],
                    }
                )
        if not model.disks:
            disks = [{"disk": t, "kind": INTERNAL, "file": f} for t, (f, _fmt) in bases.items()]
        return {
            "name": model.name,
            "description": model.description,
            "created": _iso(model.created),
            "created_ts": model.created,
            "state": model.state,
            "kind": model.kind,
            "memory": model.has_memory,
            "memory_file": model.memory_file if model.memory_snapshot == EXTERNAL else None,
            "parent": model.parent,
            "children": sorted(children),
            "current": self.current,
            "disks": disks,
        }


def _load(session, dom):
    """``{name: Entry}`` of a VM's snapshots (one listing per VM per run)."""

    vm = dom.name()

    def loader():
        out = {}
        with libvirt_errors(f"VM '{vm}': cannot list snapshots"):
            for obj in dom.listAllSnapshots(0):
                model = xsnap.Snapshot(obj.getXMLDesc(0))
                out[model.name] = Entry(obj, model, bool(obj.isCurrent(0)))
        return out

    return session.memo(_conn.memo_key("snapshot", "list", vm), loader)


def _invalidate(session):
    session.invalidate(MEMO_PREFIX)


def _children(entries):
    kids = {name: [] for name in entries}
    for entry in entries.values():
        parent = entry.model.parent
        if parent in kids:
            kids[parent].append(entry.name)
    return kids


def _depth(entries, entry):
    depth, seen = 0, set()
    while entry.model.parent in entries and entry.name not in seen:
        seen.add(entry.name)
        entry = entries[entry.model.parent]
        depth += 1
    return depth


def _ordered(entries):
    """Oldest first; within one second (libvirt's resolution) parents before children."""
    return sorted(entries.values(), key=lambda e: (e.created, _depth(entries, e), e.name))


def _entry(entries, vm, name):
    schema.validate(schema.SNAPNAME, name, "snapshot")
    try:
        return entries[name]
    except KeyError:
        raise NotFound(f"VM '{vm}' has no snapshot '{name}'") from None


def snapshot_list(session: Any, vm: str) -> list[dict[str, Any]]:
    """Every snapshot of ``vm``, oldest first (see :meth:`Entry.describe` for the keys)."""
    dom = _domain(session, vm)
    entries = _load(session, dom)
    kids = _children(entries)
    return [e.describe(kids[e.name]) for e in _ordered(entries)]


def snapshot_show(session: Any, vm: str, name: str) -> dict[str, Any]:
    """One snapshot of ``vm`` (the keys of :func:`snapshot_list`, plus ``xml``)."""
    dom = _domain(session, vm)
    entries = _load(session, dom)
    entry = _entry(entries, vm, name)
    info = entry.describe(_children(entries)[entry.name])
    info["xml"] = entry.model.to_xml()
    return info


def snapshot_tree(session: Any, vm: str) -> list[dict[str, Any]]:
    """The snapshot tree of ``vm``:
    ``[{name, kind, state, memory, created, current, children: [...]}]``.

    Roots (snapshots without a parent) first, oldest first at every level.
    """
    dom = _domain(session, vm)
    entries = _load(session, dom)
    kids = _children(entries)

    def node(name):
        entry = entries[name]
        info = entry.describe()
        return {
            "name": name,
            "kind": info["kind"],
            "state": info["state"],
            "memory": info["memory"],
            "created": info["created"],
            "current": info["current"],
            "children": [
                node(c) for c in sorted(kids[name], key=lambda n: (entries[n].created, n))
            ],
        }

    roots = [e.name for e in _ordered(entries) if e.model.parent not in entries]
    return [node(r) for r in roots]


# --- helpers ---------------------------------------------------------------


def _failed(cmd, output, code):
    """The error of ``cmd`` exiting with ``code``: the last line it printed, else the code."""
    lines = (output or "").strip().splitlines()
    return KvmError(f"{' '.join(cmd[:2])} failed: {lines[-1] if lines else f'exit code {code}'}")


def _run(*cmd):
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KvmError(f"{cmd[0]} failed: {exc}") from None
    if proc.returncode != 0:
        raise _failed(cmd, proc.stderr or proc.stdout, proc.returncode)
    return proc.stdout


#: what ``qemu-img ... -p`` prints as it goes: ``    (42.50/100%)\r``
_QEMU_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def _run_progress(on_percent, *cmd):
    """Run ``cmd`` (argv with ``-p``, never a shell) and call ``on_percent(float)``
    for each progress figure it prints; errors as :func:`_run` raises them."""
    deadline = time.monotonic() + QEMU_IMG_TIMEOUT
    with tempfile.TemporaryFile() as err_file:
        try:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL
            )  # nosec B603  # argv list
        except OSError as exc:
            raise KvmError(f"{cmd[0]} failed: {exc}") from None
        pending = b""
        with proc, selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise KvmError(f"{' '.join(cmd[:2])} did not finish within {QEMU_IMG_TIMEOUT}s")
                if not sel.select(timeout=1.0):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                pending += chunk
                *figures, pending = re.split(rb"[\r\n]", pending)
                for figure in figures:
                    match = _QEMU_PROGRESS.search(figure)
                    if match:
                        on_percent(float(match.group(1)))
            code = proc.wait()
        if code != 0:
            err_file.seek(0)
            raise _failed(cmd, err_file.read().decode(errors="replace"), code)


def _percent_to(reporter):
    """``on_percent`` for :func:`_run_progress`: a percent of the reporter's total, as bytes."""

    def on_percent(pct):
        total = reporter.total
        reporter.update(int(total * pct / 100) if total else None)

    return on_percent


def image_chain(path: str) -> list[dict[str, Any]]:
    """``[{"file", "format", "backing", "virtual_size"}, ...]`` of an image and its backing
    files, top first (``qemu-img info``)."""
    out = _run("qemu-img", "info", "-U", "--backing-chain", "--output=json", path)
    data = json.loads(out)
    if isinstance(data, dict):
        data = [data]
    return [
        {
            "file": item.get("filename"),
            "format": item.get("format"),
            "backing": item.get("full-backing-filename") or item.get("backing-filename"),
            "virtual_size": item.get("virtual-size"),
        }
        for item in data
    ]


def _is_active(dom):
    with libvirt_errors(f"VM '{dom.name()}'"):
        return bool(dom.isActive())


def _xml(dom, inactive=False):
    flags = _lv().VIR_DOMAIN_XML_SECURE
    if inactive:
        flags |= _lv().VIR_DOMAIN_XML_INACTIVE
    return Domain(dom.XMLDesc(flags))


def _snapshot_disks(domain):
    return [d for d in domain.disks if d.is_snapshottable]


def _unique_name(entries, prefix=""):
    base = prefix + datetime.datetime.now(datetime.timezone.utc).strftime(NAME_FORMAT)
    name, n = base, 1
    while name in entries:
        name = f"{base}-{n}"
        n += 1
    return name


def _overlay_path(vm, disk, name):
    source = disk.source or ""
    directory = (
        os.path.dirname(source)
        if disk.type == "file" and source.startswith("/")
        else "/var/lib/libvirt/images"
    )
    return os.path.join(directory, f"{vm}-{disk.target}.{name}.qcow2")


def _memory_path(vm, disks, name):
    first = disks[0]
    source = first.source or ""
    directory = (
        os.path.dirname(source)
        if first.type == "file" and source.startswith("/")
        else "/var/lib/libvirt/qemu/save"
    )
    return os.path.join(directory, f"{vm}.{name}.mem")


def _built_on(entries, image, exclude=()):
    """Snapshots recorded as taken while a disk used ``image`` (they build on it)."""
    out = []
    for entry in entries.values():
        if entry.name in exclude:
            continue
        if any(src == image for src, _fmt in entry.base_images().values()):
            out.append(entry)
    return out


def _external_overlay_owner(entries, path):
    for entry in entries.values():
        if path in entry.overlays().values():
            return entry
    return None


# --- create ----------------------------------------------------------------


def plan_create(
    vm: str,
    running: bool,
    domain: Domain,
    entries: dict[str, Entry],
    *,
    memory: bool = True,
    disk_only: bool = False,
    external: bool = False,
    quiesce: bool = False,
    name: Optional[str] = None,
) -> dict[str, Any]:
    """Decide the kind of snapshot and check it can be deleted and reverted later.

    Returns ``{"kind", "memory", "disk_only", "quiesce", "overlays", "memory_file"}``; raises
    :class:`KvmError` / :class:`Refused` (nothing changed) when it cannot be taken safely.
    Pure: takes the parsed domain and the snapshot entries.
    """
    disks = _snapshot_disks(domain)
    if not disks:
        raise KvmError(f"VM '{vm}' has no writable disk to snapshot")
    if quiesce and running:
        agent = domain.guest_agent
        if agent is None:
            raise KvmError(
                f"quiesce needs the QEMU guest agent, and VM '{vm}' has no guest agent channel "
                "(org.qemu.guest_agent.0); nothing was changed"
            )
        if agent == "disconnected":
            raise KvmError(
                f"quiesce needs the QEMU guest agent, and the agent in VM '{vm}' does not "
                "answer (is qemu-guest-agent running?); nothing was changed"
            )
    quiesce = bool(quiesce and running)
    if running:
        is_external = bool(external or disk_only or not memory or quiesce)
        with_memory = bool(memory and not disk_only and not quiesce)
    else:
        is_external = bool(external)
        with_memory = False
    plan: dict[str, Any] = {
        "kind": EXTERNAL if is_external else INTERNAL,
        "memory": with_memory,
        "quiesce": quiesce,
        "overlays": {},
        "memory_file": None,
    }
    plan["disk_only"] = is_external and not with_memory
    if not is_external:
        for disk in disks:
            if disk.format != "qcow2":
                raise KvmError(
                    f"internal snapshots need qcow2 disks: disk {disk.target} of VM '{vm}' is "
                    f"{disk.format or 'of unknown format'} ({disk.source}); take an external "
                    "snapshot (external: True) instead; nothing was changed"
                )
            owner = _external_overlay_owner(entries, disk.source)
            if owner is not None:
                raise Refused(
                    f"disk {disk.target} of VM '{vm}' is the overlay of external snapshot "
                    f"'{owner.name}': an internal snapshot would be stored inside that overlay, "
                    "which libvirt cannot delete while the VM runs and which deleting "
                    f"'{owner.name}' (merging its overlay) would destroy; delete '{owner.name}' "
                    "first or take an external snapshot"
                )
    else:
        for disk in disks:
            path = _overlay_path(vm, disk, name or "NAME")
            plan["overlays"][disk.target] = path
        if with_memory:
            plan["memory_file"] = _memory_path(vm, disks, name or "NAME")
    return plan


def snapshot_create(
    session: Any,
    vm: str,
    *,
    name: Optional[str] = None,
    memory: bool = True,
    disk_only: bool = False,
    external: bool = False,
    quiesce: bool = False,
    description: Optional[str] = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Take a snapshot of ``vm``; return it as :func:`snapshot_show` describes it (without
    ``xml``)."""
    args = schema.validate_args(
        schema.SNAPSHOT,
        vm,
        {
            "snapshot": name,
            "memory": memory,
            "disk_only": disk_only,
            "external": external,
            "quiesce": quiesce,
            "description": description,
        },
        name_field=schema.OBJNAME,
    )
    dom = _domain(session, vm)
    entries = _load(session, dom)
    name = args.get("snapshot") or _unique_name(entries, prefix)
    if name in entries:
        raise KvmError(f"VM '{vm}' already has a snapshot '{name}'")
    running = _is_active(dom)
    domain = _xml(dom, inactive=not running)
    plan = plan_create(
        vm,
        running,
        domain,
        entries,
        memory=args.get("memory", True),
        disk_only=args.get("disk_only", False),
        external=args.get("external", False),
        quiesce=args.get("quiesce", False),
        name=name,
    )
    for path in list(plan["overlays"].values()) + (
        [plan["memory_file"]] if plan["memory_file"] else []
    ):
        if os.path.exists(path):
            raise KvmError(
                f"cannot take external snapshot '{name}' of VM '{vm}': {path} already exists"
            )
    lv = _lv()
    flags = lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    disks: list[tuple[Any, ...]] = []
    if plan["kind"] == EXTERNAL:
        for disk in domain.disks:
            if disk.target in plan["overlays"]:
                disks.append((disk.target, EXTERNAL))
            else:
                disks.append((disk.target, xsnap.NO))
        if plan["disk_only"]:
            flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        if plan["quiesce"]:
            flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        memory_mode = EXTERNAL if plan["memory"] else xsnap.NO
    else:
        memory_mode = INTERNAL if running else xsnap.NO
    if plan["kind"] == EXTERNAL:
        disks = [
            (t, k, plan["overlays"].get(t), "qcow2" if k == EXTERNAL else None) for t, k in disks
        ]
    xml = xsnap.build(
        name,
        args.get("description"),
        memory=memory_mode,
        memory_file=plan["memory_file"],
        disks=disks or None,
    )
    try:
        dom.snapshotCreateXML(xml, flags)
    except lv.libvirtError as exc:  # raw: a memory file left behind is removed first
        _invalidate(session)
        if (
            plan["memory_file"]
            and os.path.exists(plan["memory_file"])
            and name not in _load(session, dom)
        ):
            os.unlink(plan["memory_file"])
        msg = _err(exc)
        if plan["quiesce"] and "agent" in msg.lower():
            msg = f"quiesce needs the QEMU guest agent: {msg}"
        raise KvmError(f"cannot take snapshot '{name}' of VM '{vm}': {msg}") from None
    finally:
        _invalidate(session)
    entries = _load(session, dom)
    if name not in entries:
        raise KvmError(f"snapshot '{name}' of VM '{vm}' is missing after it was taken")
    return entries[name].describe(_children(entries)[name])


# --- revert ----------------------------------------------------------------


def _check_internal_revert(vm, entry, entries):
    images = {src for src, _fmt in entry.base_images().values()}
    users = []
    for other in entries.values():
        if other.name == entry.name or other.model.kind != EXTERNAL:
            continue
        for target, (src, _fmt) in other.base_images().items():
            if target in other.overlays() and src in images:
                users.append(other.name)
    if users:
        raise Refused(
            f"reverting VM '{vm}' to internal snapshot '{entry.name}' would rewrite "
            f"{', '.join(sorted(images))}, which external snapshot(s) "
            f"{', '.join(repr(u) for u in sorted(set(users)))} are built on (their data would "
            "be corrupted); delete those first (salt-kvm merges their overlays)"
        )


def snapshot_revert(
    session: Any, vm: str, name: str, *, running: Optional[bool] = None
) -> dict[str, Any]:
    """Revert ``vm`` to snapshot ``name``; return ``{"snapshot", "state"}``.

    The VM ends in the snapshot's state (running, paused or shut off; a
    disk-only snapshot ends shut off) unless ``running`` says otherwise.
    """
    args = schema.validate_args(
        schema.SNAPSHOT, vm, {"snapshot": name, "running": running}, name_field=schema.OBJNAME
    )
    running = args.get("running")
    dom = _domain(session, vm)
    entries = _load(session, dom)
    entry = _entry(entries, vm, name)
    lv = _lv()
    try:
        if entry.model.kind == EXTERNAL:
            _revert_external(dom, vm, entry, entries, running)
        else:
            _check_internal_revert(vm, entry, entries)
            flags = lv.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING if running else 0
            with libvirt_errors(f"cannot revert VM '{vm}' to snapshot '{name}'"):
                dom.revertToSnapshot(entry.obj, flags)
            if running is False and dom.isActive():
                dom.destroy()
    finally:
        _invalidate(session)
    return {"snapshot": name, "state": _state_name(dom)}


def _state_name(dom):
    state = dom.state()[0]
    lv = _lv()
    return {
        lv.VIR_DOMAIN_RUNNING: "running",
        lv.VIR_DOMAIN_PAUSED: "paused",
        lv.VIR_DOMAIN_SHUTOFF: "shutoff",
        lv.VIR_DOMAIN_SHUTDOWN: "shutdown",
        lv.VIR_DOMAIN_CRASHED: "crashed",
        lv.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
    }.get(state, "unknown")


def _revert_external(dom, vm, entry, entries, running):
    lv = _lv()
    model = entry.model
    overlays = entry.overlays()
    bases = entry.base_images()
    active = _is_active(dom)
    current = _xml(dom, inactive=not active)
    for target, overlay in overlays.items():
        disk = current.disk(target)
        if disk is None or target not in bases:
            raise KvmError(
                f"cannot revert VM '{vm}' to snapshot '{entry.name}': disk {target} is gone "
                "from the VM"
            )
        later = [e.name for e in _built_on(entries, overlay, exclude=(entry.name,))]
        if later:
            raise Refused(
                f"cannot revert VM '{vm}' to external snapshot '{entry.name}': snapshot(s) "
                f"{', '.join(repr(n) for n in sorted(later))} were taken on top of its overlay "
                f"{overlay} and their data would be lost; revert to or delete them first"
            )
        if disk.source != overlay:
            raise KvmError(
                f"cannot revert VM '{vm}' to external snapshot '{entry.name}': disk {target} "
                f"uses {disk.source}, not the snapshot's overlay {overlay}"
            )
    with_memory = (
        model.memory_snapshot == EXTERNAL
        and model.memory_file
        and os.path.exists(model.memory_file)
    )
    snap_running = model.state in ("running", "paused")
    want_running = running if running is not None else bool(with_memory and snap_running)
    if active:
        with libvirt_errors(f"cannot stop VM '{vm}' to revert it"):
            dom.destroy()
    for target, overlay in overlays.items():
        base, fmt = bases[target]
        _run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", fmt or "raw", overlay)
    with libvirt_errors(
        f"VM '{vm}': the disks were reverted to snapshot '{entry.name}' but the VM did not start"
    ):
        if want_running and with_memory:
            inactive = dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE | lv.VIR_DOMAIN_XML_SECURE)
            flag = (
                lv.VIR_DOMAIN_SAVE_PAUSED
                if model.state == "paused" and running is None
                else lv.VIR_DOMAIN_SAVE_RUNNING
            )
            dom.connect().restoreFlags(model.memory_file, inactive, flag)
        elif want_running:
            dom.create()
    try:  # make it the current snapshot again
        dom.snapshotCreateXML(
            entry.obj.getXMLDesc(0),
            lv.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | lv.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT,
        )
    except lv.libvirtError as exc:  # raw: only a warning, the revert itself succeeded
        log.warning("could not mark snapshot %s current: %s", entry.name, _err(exc))


# --- delete ----------------------------------------------------------------


def _descendants(entries, name):
    kids = _children(entries)
    out = []

    def walk(n):
        for child in kids.get(n, ()):
            walk(child)
            out.append(child)

    walk(name)
    return out


def snapshot_delete(
    session: Any,
    vm: str,
    name: str,
    *,
    children: bool = False,
    progress: Optional[Callable[[dict[str, Any]], Any]] = None,
) -> dict[str, list[str]]:
    """Delete snapshot ``name`` (and its descendants with ``children``); return
    ``{"deleted": [...], "merged": [...]}``.

    External snapshots libvirt cannot delete are merged by salt-kvm (see the module doc),
    reporting the merge's progress to ``progress`` (see :func:`merge_external`).
    """
    args = schema.validate_args(
        schema.SNAPSHOT, vm, {"snapshot": name, "children": children}, name_field=schema.OBJNAME
    )
    dom = _domain(session, vm)
    entries = _load(session, dom)
    entry = _entry(entries, vm, name)
    order = [entry.name]
    if args.get("children"):
        # newest (and deepest) first, so external chains are merged from the top down
        order = sorted(
            _descendants(entries, name) + [entry.name],
            key=lambda n: (entries[n].created, _depth(entries, entries[n]), n),
            reverse=True,
        )
    result: dict[str, list[str]] = {"deleted": [], "merged": []}
    try:
        for item in order:
            _invalidate(session)
            current = _load(session, dom)
            if item not in current:
                continue
            merged = _delete_one(session, dom, vm, current[item], current, progress)
            result["deleted"].append(item)
            if merged:
                result["merged"].append(merged)
    finally:
        _invalidate(session)
    return result


def _delete_one(session, dom, vm, entry, entries, progress=None):
    lv = _lv()
    if entry.model.kind != EXTERNAL:
        try:
            entry.obj.delete(0)
        except lv.libvirtError as exc:  # raw: one of libvirt's messages gets our explanation
            msg = _err(exc)
            if "not the same as disk image currently used" in msg:
                msg = (
                    f"libvirt cannot delete internal snapshot '{entry.name}' while VM '{vm}' "
                    "runs on the overlay of a later external snapshot; stop the VM, or delete "
                    "the external snapshot(s) first"
                )
                raise KvmError(msg) from None
            raise KvmError(f"cannot delete snapshot '{entry.name}' of VM '{vm}': {msg}") from None
        return None
    # refuse when the overlay holds internal snapshots (they would be lost with it)
    for overlay in entry.overlays().values():
        inside = [
            e.name
            for e in _built_on(entries, overlay, exclude=(entry.name,))
            if e.model.kind != EXTERNAL
        ]
        if inside:
            raise Refused(
                f"internal snapshot(s) {', '.join(repr(n) for n in sorted(inside))} are stored "
                f"in the overlay {overlay} of external snapshot '{entry.name}'; delete them "
                "first (or use children: True)"
            )
    _guard_shared_bases(session, dom, vm, entry)
    try:
        _libvirt_delete_external(dom, vm, entry, progress)
        _cleanup_files(entry)
        return None
    except lv.libvirtError as exc:  # raw: an unsupported delete is merged by salt-kvm
        code = exc.get_error_code()
        if code not in (
            lv.VIR_ERR_OPERATION_UNSUPPORTED,
            lv.VIR_ERR_CONFIG_UNSUPPORTED,
            lv.VIR_ERR_INVALID_ARG,
            lv.VIR_ERR_NO_SUPPORT,
        ):
            raise KvmError(
                f"cannot delete snapshot '{entry.name}' of VM '{vm}': {_err(exc)}"
            ) from None
        log.info("libvirt refused to delete %s (%s); merging it", entry.name, _err(exc))
    merge_external(dom, vm, entry, entries, progress=progress)
    return entry.name


def _guard_shared_bases(session, dom, vm, entry):
    """Refuse to merge an overlay of ``entry`` into an image anything but this VM builds on.

    A merge writes the overlay's data into the image below it: a volume made
    with that image as its backing file, another VM's disk on it, or another
    VM's snapshot would see its content change. This VM's own snapshots are
    checked by :func:`merge_external` (they are re-pointed or refused there).
    """
    bases = entry.base_images()
    current = _xml(dom, inactive=not _is_active(dom))
    index = None
    for target, overlay in entry.overlays().items():
        disk = current.disk(target)
        if (
            target not in bases
            or disk is None
            or not disk.source
            or not os.path.exists(disk.source)
        ):
            continue
        files = [c["file"] for c in image_chain(disk.source)]
        if overlay not in files:
            continue  # a dangling overlay: nothing is merged into the base
        index = index or depends.scan(session)
        base = bases[target][0]
        ident = depends.identity(base)
        others = index.others_than(ident, vm, exclude=files[: files.index(overlay) + 1])
        if others:
            raise Refused(
                f"merging snapshot '{entry.name}' of VM '{vm}' would write its overlay "
                f"{overlay} into {base}, which {', '.join(others)} also build(s) on; their "
                "content would change (delete or flatten them first, e.g. kvm.volume_clone "
                "to a standalone copy)"
            )


def _libvirt_delete_external(dom, vm, entry, progress=None):
    """libvirt deletes an external snapshot itself where it can (merging the overlays
    with block jobs of its own): watch those jobs for the progress of a running VM
    (a stopped VM's merge inside libvirt shows none: only the elapsed time is reported).
    Nothing is reported when libvirt refuses at once (salt-kvm then merges itself)."""
    targets = sorted(entry.overlays())
    active = _is_active(dom)
    reporter = _progress.Reporter(
        "merge",
        f"deleting external snapshot '{entry.name}' of VM '{vm}' "
        f"(libvirt merges {', '.join(targets)})",
        total=None,
        progress=progress,
        fields={"vm": vm, "snapshot": entry.name, "disk": ",".join(targets)},
        logger=log,
    )

    def probe():
        if not active:
            return None
        cur = end = 0
        for target in targets:
            info = dom.blockJobInfo(target, 0)
            if info and info.get("end", 0) > 0:
                cur, end = cur + info.get("cur", 0), end + info["end"]
        return (cur, end) if end else None

    _progress.watch(lambda: entry.obj.delete(0), probe, reporter, lazy=True)


def _cleanup_files(entry):
    memory = entry.model.memory_file
    if entry.model.memory_snapshot == EXTERNAL and memory and os.path.exists(memory):
        os.unlink(memory)


def _wait_job(dom, target, until_ready, timeout=BLOCK_JOB_TIMEOUT, reporter=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with libvirt_errors(f"block job on {target}"):
            info = dom.blockJobInfo(target, 0)
        if not info:
            return "gone"
        if reporter is not None and info.get("end", 0) > 0:
            reporter.update(
                info.get("cur", 0), info["end"]
            )  # bytes of the disk the job went through
        if until_ready and info.get("end", 0) > 0 and info.get("cur") == info.get("end"):
            return "ready"
        time.sleep(0.05)
    raise KvmError(f"block job on disk {target} did not finish within {timeout}s")


def _pivot(dom, target):
    lv = _lv()
    last = None
    for _attempt in range(100):
        try:
            dom.blockJobAbort(target, lv.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            break
        except lv.libvirtError as exc:  # raw: retried until the job is ready to pivot
            last = exc
            time.sleep(0.1)
            _wait_job(dom, target, until_ready=True)
    else:
        raise KvmError(f"cannot pivot disk {target} to the merged image: {_err(last)}")
    _wait_job(dom, target, until_ready=False, timeout=60)


def merge_external(
    dom: Any,
    vm: str,
    entry: Entry,
    entries: dict[str, Entry],
    *,
    progress: Optional[Callable[[dict[str, Any]], Any]] = None,
) -> None:
    """Delete external snapshot ``entry`` by merging each overlay into the image below it.

    Running VM: block commit (active commit + pivot when the overlay is the top
    image). Stopped VM: ``qemu-img commit`` (and ``rebase`` of the image above).
    Then the VM definition and later snapshots' metadata point at the merged
    image, overlay and memory files are removed, and the metadata is dropped.

    Each overlay's merge reports its progress (``progress``: see
    :mod:`salt_kvm.progress`, operation ``merge``): from the block job's
    ``cur``/``end`` for a running VM, from ``qemu-img commit -p`` for a stopped
    one; ``bytes`` and ``total`` count the virtual disk the merge went through.
    """
    lv = _lv()
    active = _is_active(dom)
    current = _xml(dom, inactive=not active)
    bases = entry.base_images()
    steps = []
    sizes = {}  # overlay -> virtual size (the merge's total)
    for target, overlay in entry.overlays().items():
        if target not in bases:
            raise KvmError(
                f"snapshot '{entry.name}' of VM '{vm}' records no image below overlay {overlay}"
            )
        base, base_fmt = bases[target]
        disk = current.disk(target)
        if disk is None:
            raise KvmError(f"disk {target} of snapshot '{entry.name}' is gone from VM '{vm}'")
        chain = image_chain(disk.source) if disk.source and os.path.exists(disk.source) else []
        files = [c["file"] for c in chain]
        if overlay not in files:
            users = [e.name for e in _built_on(entries, overlay, exclude=(entry.name,))]
            if users:
                raise Refused(
                    f"overlay {overlay} of snapshot '{entry.name}' is not in VM '{vm}''s "
                    f"current chain but snapshot(s) {', '.join(repr(n) for n in sorted(users))} "
                    "build on it; delete them first"
                )
            steps.append(("dangling", target, overlay, base, base_fmt, None))
            continue
        index = files.index(overlay)
        if index + 1 >= len(files) or files[index + 1] != base:
            raise KvmError(
                f"overlay {overlay} of snapshot '{entry.name}' is not backed by {base} "
                f"(found {files[index + 1 : index + 2]}); not merging"
            )
        others = [
            e.name
            for e in _built_on(entries, base, exclude=(entry.name,))
            if e.model.kind == EXTERNAL
            and base in e.base_images().get(target, ())[:1]
            and e.overlays().get(target) not in files
        ]
        if others:
            raise Refused(
                f"image {base} also backs snapshot(s) {', '.join(repr(n) for n in others)} "
                f"outside the VM's current chain; merging {overlay} into it would corrupt them"
            )
        above = files[index - 1] if index > 0 else None
        steps.append(("top" if index == 0 else "middle", target, overlay, base, base_fmt, above))
        sizes[overlay] = chain[index].get("virtual_size")

    for kind, target, overlay, base, base_fmt, above in steps:
        if kind == "dangling":
            continue
        reporter = _progress.Reporter(
            "merge",
            f"merging {overlay} into {base} (snapshot '{entry.name}' of VM '{vm}', disk {target})",
            total=sizes.get(overlay),
            progress=progress,
            fields={
                "vm": vm,
                "snapshot": entry.name,
                "disk": target,
                "overlay": overlay,
                "base": base,
            },
            logger=log,
        )
        reporter.start()
        try:
            if active:
                # a commit that an earlier, interrupted run started is still QEMU's job: resume it
                running_job = (dom.blockJobInfo(target, 0) or {}).get("type")
                if kind == "top":
                    if running_job != lv.VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT:
                        dom.blockCommit(target, base, None, 0, lv.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
                    else:
                        log.info(
                            "resuming the interrupted merge of %s into %s (VM %s, disk %s)",
                            overlay,
                            base,
                            vm,
                            target,
                        )
                    _wait_job(dom, target, until_ready=True, reporter=reporter)
                    _pivot(dom, target)
                else:
                    if running_job != lv.VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT:
                        dom.blockCommit(target, base, overlay, 0, 0)
                    _wait_job(dom, target, until_ready=False, reporter=reporter)
            else:
                _run_progress(
                    _percent_to(reporter), "qemu-img", "commit", "-p", "-f", "qcow2", overlay
                )
                if kind == "middle":
                    _run(
                        "qemu-img",
                        "rebase",
                        "-q",
                        "-u",
                        "-f",
                        "qcow2",
                        "-b",
                        base,
                        "-F",
                        base_fmt or "raw",
                        above,
                    )
        except lv.libvirtError as exc:  # raw: the progress report is closed with the error
            reporter.finish(error=_err(exc))
            raise KvmError(
                f"merging overlay {overlay} of snapshot '{entry.name}' into {base} failed: "
                f"{_err(exc)}"
            ) from None
        except KvmError as exc:
            reporter.finish(error=str(exc))
            raise
        reporter.finish()

    # the VM definition: point the disk at the merged image (a running VM's was updated by
    # the pivot)
    inactive = _xml(dom, inactive=True)
    changed = False
    for kind, target, overlay, base, base_fmt, _above in steps:
        disk = inactive.disk(target)
        if disk is None:
            continue
        if kind == "top" and disk.source == overlay:
            disk.set_image(base, base_fmt or "raw")
            changed = True
        elif kind == "middle" and disk.element.find("backingStore") is not None:
            disk.set_image(disk.source, disk.format or "qcow2")
            changed = True
    if changed:
        with libvirt_errors(f"cannot point VM '{vm}' at the merged image"):
            dom.connect().defineXML(inactive.to_xml(pretty=False))

    # later snapshots that were taken on top of the overlay now build on the base image
    for _kind, target, overlay, base, base_fmt, _above in steps:
        for later in _built_on(entries, overlay, exclude=(entry.name,)):
            if later.model.set_domain_disk_image(target, base, base_fmt or "raw"):
                with libvirt_errors(
                    f"cannot update the metadata of snapshot '{later.name}' after merging"
                ):
                    dom.snapshotCreateXML(
                        later.model.to_xml(pretty=False),
                        lv.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
                        | (lv.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT if later.current else 0),
                    )

    with libvirt_errors(
        f"merged snapshot '{entry.name}' of VM '{vm}' but cannot drop its metadata"
    ):
        entry.obj.delete(lv.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    for _kind, _target, overlay, *_rest in steps:
        if os.path.exists(overlay):
            os.unlink(overlay)
    _cleanup_files(entry)


# --- prune -----------------------------------------------------------------


def _prune_candidates(entries, keep, older_than=None, prefix=DEFAULT_PREFIX, now=None, extra=0):
    """Names to delete: matching ``prefix``, beyond the newest ``keep`` (``extra`` more are
    about to be taken)."""
    now = time.time() if now is None else now
    managed = sorted(
        (e for e in entries.values() if e.name.startswith(prefix)),
        key=lambda e: (e.created, e.name),
        reverse=True,
    )
    beyond = managed[max(keep - extra, 0) :]
    if older_than is not None:
        beyond = [e for e in beyond if now - e.created >= older_than]
    return [e.name for e in sorted(beyond, key=lambda e: (e.created, e.name))]


def snapshot_prune(
    session: Any,
    vm: str,
    keep: int,
    *,
    older_than: Any = None,
    prefix: str = DEFAULT_PREFIX,
    progress: Optional[Callable[[dict[str, Any]], Any]] = None,
) -> dict[str, list[str]]:
    """Delete the snapshots of ``vm`` named ``prefix*`` beyond the newest ``keep`` (only those
    older than ``older_than``).

    Snapshots without the prefix are never touched. Returns ``{"deleted": [...], "kept": [...]}``.
    """
    args = schema.validate_args(
        schema.SNAPSHOT_PRUNE,
        vm,
        {"keep": keep, "older_than": older_than, "prefix": prefix},
        name_field=schema.OBJNAME,
    )
    prefix = args.get("prefix", DEFAULT_PREFIX)
    dom = _domain(session, vm)
    entries = _load(session, dom)
    doomed = _prune_candidates(entries, args["keep"], args.get("older_than"), prefix)
    deleted = []
    for name in doomed:
        snapshot_delete(session, vm, name, progress=progress)
        deleted.append(name)
    _invalidate(session)
    left = _load(session, dom)
    return {"deleted": deleted, "kept": sorted(n for n in left if n.startswith(prefix))}


# --- states ----------------------------------------------------------------


def snapshot_present(
    session: Any, vm: str, snapshot: str, *, test: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """State ``snapshot_present``: snapshot ``snapshot`` of ``vm`` exists (taken once, never
    retaken)."""
    what = f"snapshot '{snapshot}' of VM '{vm}'"
    try:
        args = schema.validate_args(
            schema.SNAPSHOT, vm, dict(kwargs, snapshot=snapshot), name_field=schema.OBJNAME
        )
    except InvalidInput as exc:
        return state_return(vm, False, comment=f"{what}: {exc}")
    if "snapshot" not in args:
        return state_return(vm, False, comment=f"VM '{vm}': snapshot is required")
    return ensure(vm, SnapshotResource(session, vm, args), test=test)


class SnapshotResource(Resource):
    """One named snapshot of a VM: taken once when it is missing, never retaken.

    ``read`` describes the snapshot (None: missing); ``plan`` decides its kind
    (and refuses what could not be deleted or reverted later); ``restore``
    deletes a snapshot a failed run left behind.
    """

    def __init__(self, session: Any, vm: str, args: dict[str, Any]) -> None:
        self.session, self.vm, self.args = session, vm, args
        self.name = args["snapshot"]
        self.what = f"snapshot '{self.name}' of VM '{vm}'"

    def read(self) -> Optional[dict[str, Any]]:
        dom = _domain(self.session, self.vm)
        entries = _load(self.session, dom)
        return entries[self.name].describe() if self.name in entries else None

    def plan(self, current: Optional[dict[str, Any]]) -> Plan:
        if current is not None:
            return Plan({})
        dom = _domain(self.session, self.vm)
        running = _is_active(dom)
        decided = plan_create(
            self.vm,
            running,
            _xml(dom, inactive=not running),
            _load(self.session, dom),
            memory=self.args.get("memory", True),
            disk_only=self.args.get("disk_only", False),
            external=self.args.get("external", False),
            quiesce=self.args.get("quiesce", False),
            name=self.name,
        )
        new = {"name": self.name, "kind": decided["kind"], "memory": decided["memory"]}
        return Plan({"snapshot": {"old": None, "new": new}}, existed=False)

    def apply(self, plan: Plan, undo: Undo) -> None:
        a = self.args
        snapshot_create(
            self.session,
            self.vm,
            name=self.name,
            memory=a.get("memory", True),
            disk_only=a.get("disk_only", False),
            external=a.get("external", False),
            quiesce=a.get("quiesce", False),
            description=a.get("description"),
        )

    def verify(self, plan: Plan, after: Optional[dict[str, Any]]) -> Changes:
        if after is None:
            return {"snapshot": {"old": None, "new": self.name}}
        return {}

    def restore(self, before: Optional[dict[str, Any]], undo: Undo) -> Optional[str]:
        # also when the create itself failed: libvirt may have taken it before the error
        dom = _domain(self.session, self.vm)
        _invalidate(self.session)
        if before is None and self.name in _load(self.session, dom):
            snapshot_delete(self.session, self.vm, self.name)
            return f"by deleting snapshot '{self.name}'"
        return None

    def summary(self, plan: Plan, test: bool) -> str:
        new = plan.changes["snapshot"]["new"]
        kind = new["kind"] if isinstance(new, dict) else ""
        return f"{self.what} {'would be' if test else 'was'} taken ({kind})"


def snapshot_absent(
    session: Any,
    vm: str,
    snapshot: str,
    *,
    children: bool = False,
    test: bool = False,
    progress: Optional[Callable[[dict[str, Any]], Any]] = None,
) -> dict[str, Any]:
    """State ``snapshot_absent``: snapshot ``snapshot`` of ``vm`` does not exist (external
    ones are merged)."""
    what = f"snapshot '{snapshot}' of VM '{vm}'"
    try:
        args = schema.validate_args(
            schema.SNAPSHOT,
            vm,
            {"snapshot": snapshot, "children": children},
            name_field=schema.OBJNAME,
        )
    except InvalidInput as exc:
        return state_return(vm, False, comment=f"{what}: {exc}")

    def exists():
        try:
            dom = _domain(session, vm)
        except NotFound:
            return None
        entries = _load(session, dom)
        if snapshot not in entries:
            return None
        info = entries[snapshot].describe()
        return {
            "name": snapshot,
            "kind": info["kind"],
            "memory": info["memory"],
            "created": info["created"],
        }

    def remove(_current):
        snapshot_delete(
            session, vm, snapshot, children=args.get("children", False), progress=progress
        )
        _invalidate(session)

    return _plan_absent(vm, what, exists, remove, test=test)


def snapshots_retained(
    session: Any,
    vm: str,
    *,
    test: bool = False,
    progress: Optional[Callable[[dict[str, Any]], Any]] = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """State ``snapshots_retained``: rolling snapshots named ``prefix*`` (see
    :class:`RetentionResource`)."""
    what = f"snapshots of VM '{vm}'"
    try:
        args = schema.validate_args(schema.RETENTION, vm, kwargs, name_field=schema.OBJNAME)
    except InvalidInput as exc:
        return state_return(vm, False, comment=f"{what}: {exc}")
    return ensure(vm, RetentionResource(session, vm, args, progress=progress), test=test)


@dataclasses.dataclass(frozen=True)
class RetentionPlan:
    """What :meth:`RetentionResource.plan` decided: the snapshot to take (None: none is
    due) and the ones to delete, oldest first."""

    take: Optional[str] = None
    delete: tuple[str, ...] = ()


class RetentionResource(Resource):
    """Take a snapshot when the newest ``prefix*`` one is older than ``every``; keep the
    newest ``keep``.

    Snapshots without the prefix are never touched; with ``older_than`` only
    snapshots at least that old are pruned. The snapshot is taken under the
    name the plan chose (``prefix`` + UTC time), so the changes ``test=True``
    predicts name it; ``restore`` deletes it again (the undo log says it was taken).
    """

    plural = True

    def __init__(
        self,
        session: Any,
        vm: str,
        args: dict[str, Any],
        *,
        progress: Optional[Callable[[dict[str, Any]], Any]] = None,
    ) -> None:
        self.session, self.vm, self.args = session, vm, args
        self.progress = progress
        self.prefix = args.get("prefix", DEFAULT_PREFIX)
        self.what = f"snapshots '{self.prefix}*' of VM '{vm}'"

    def read(self) -> dict[str, Any]:
        dom = _domain(self.session, self.vm)
        entries = _load(self.session, dom)
        return {
            "entries": entries,
            "names": sorted(n for n in entries if n.startswith(self.prefix)),
        }

    def plan(self, current: dict[str, Any]) -> Plan:
        entries = current["entries"]
        now = time.time()
        managed = [e for e in entries.values() if e.name.startswith(self.prefix)]
        newest = max((e.created for e in managed), default=None)
        take = newest is None or now - newest >= self.args["every"]
        changes: Changes = {}
        name = None
        if take:
            dom = _domain(self.session, self.vm)
            running = _is_active(dom)
            name = _unique_name(entries, self.prefix)
            plan_create(
                self.vm,
                running,
                _xml(dom, inactive=not running),
                entries,
                memory=self.args.get("memory", True),
                disk_only=False,
                external=self.args.get("external", False),
                quiesce=self.args.get("quiesce", False),
                name=name,
            )
            changes["taken"] = {"old": None, "new": name}
        doomed = _prune_candidates(
            entries,
            self.args["keep"],
            self.args.get("older_than"),
            self.prefix,
            now,
            extra=1 if take else 0,
        )
        if doomed:
            changes["deleted"] = {"old": doomed, "new": None}
        return Plan(changes, payload=RetentionPlan(name, tuple(doomed)))

    def apply(self, plan: Plan, undo: Undo) -> None:
        payload = plan.payload
        if payload.take:
            every = units.format_duration(self.args["every"])
            info = snapshot_create(
                self.session,
                self.vm,
                name=payload.take,
                memory=self.args.get("memory", True),
                disk_only=False,
                external=self.args.get("external", False),
                quiesce=self.args.get("quiesce", False),
                description=(
                    f"taken by salt-kvm snapshots_retained (every {every}, "
                    f"keep {self.args['keep']})"
                ),
            )
            undo.record("taken", info["name"])
        for name in payload.delete:
            snapshot_delete(self.session, self.vm, name, progress=self.progress)
        _invalidate(self.session)

    def verify(self, plan: Plan, after: dict[str, Any]) -> Changes:
        payload = plan.payload
        missing: Changes = {}
        if payload.take and payload.take not in after["names"]:
            missing["taken"] = {"old": None, "new": payload.take}
        still = sorted(set(payload.delete) & set(after["names"]))
        if still:
            missing["deleted"] = {"old": still, "new": None}
        return missing

    def restore(self, before: dict[str, Any], undo: Undo) -> Optional[str]:
        taken = undo.get("taken")
        if taken:
            _invalidate(self.session)
            dom = _domain(self.session, self.vm)
            if taken in _load(self.session, dom):
                snapshot_delete(self.session, self.vm, taken)
                return f"by deleting the new snapshot '{taken}'"
        return None

    def summary(self, plan: Plan, test: bool) -> str:
        changes = plan.changes
        parts = []
        if "taken" in changes:
            parts.append(f"{'would take' if test else 'took'} {changes['taken']['new']}")
        if "deleted" in changes:
            parts.append(
                f"{'would delete' if test else 'deleted'} {', '.join(changes['deleted']['old'])}"
            )
        return f"{self.what}: " + "; ".join(parts)
