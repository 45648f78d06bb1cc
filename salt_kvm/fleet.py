"""The fleet: what the ``kvm`` runner gathers from many hypervisors, and how.

Two halves, both free of Salt dunders:

* the minion side (:func:`host_report`, :func:`each_vm`), called by the
  execution functions ``kvm.host_report``, ``kvm.snapshot_vms`` and
  ``kvm.revert_vms`` with the run's :class:`~salt_kvm.conn.Session`;
* the master side (:func:`report`, :func:`vm_action`, :func:`format_report`),
  called by the runner ``kvm`` with a ``salt.client.LocalClient`` (or anything
  with the same ``cmd`` / ``cmd_batch`` methods). Salt is the transport: the
  runner publishes jobs, in batches where they change something
  (``batch: 10%``), and collects the returns.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any, Callable, Iterable, Optional, Union

from salt_kvm import conn as _conn
from salt_kvm.errors import InvalidInput
from salt_kvm.errors import KvmError as KvmError  # the runner catches fleet.KvmError

#: the drift check: what ``state.apply kvm test=True`` would change
DRIFT_SLS = "kvm"


# --- minion side -------------------------------------------------------------


def _bridges():
    """Kernel bridges of this host's network namespace and their ports."""
    try:
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover
        return []
    with IPRoute() as ipr:
        links = ipr.get_links()
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
    bridges = {}
    for link in links:
        info = link.get_attr("IFLA_LINKINFO")
        if info is not None and info.get_attr("IFLA_INFO_KIND") == "bridge":
            bridges[link["index"]] = {
                "name": link.get_attr("IFLA_IFNAME"),
                "state": "up" if link["flags"] & 1 else "down",
                "ports": [],
            }
    for link in links:
        master = link.get_attr("IFLA_MASTER")
        if master in bridges:
            bridges[master]["ports"].append(names.get(link["index"]))
    out = sorted(bridges.values(), key=lambda b: b["name"])
    for bridge in out:
        bridge["ports"].sort()
    return out


def _networks(conn):
    out = []
    for net in conn.listAllNetworks(0):
        with _conn.libvirt_caught():  # removed while we looked: left out
            bridge = None
            with _conn.libvirt_caught():
                bridge = net.bridgeName()
            out.append(
                {
                    "name": net.name(),
                    "active": bool(net.isActive()),
                    "autostart": bool(net.autostart()),
                    "bridge": bridge,
                }
            )
    return sorted(out, key=lambda n: n["name"])


def _pool_type(pool):
    from salt_kvm.xml.base import parse  # pylint: disable=import-outside-toplevel

    return parse(pool.XMLDesc(0)).get("type")


def _pools(conn):
    out = []
    for pool in conn.listAllStoragePools(0):
        with _conn.libvirt_caught():  # removed while we looked: left out
            out.append(_pool(pool))
    return sorted(out, key=lambda p: p["name"])


def _pool(pool):
    _state, capacity, allocation, available = pool.info()
    active = bool(pool.isActive())
    entry = {
        "name": pool.name(),
        "type": _pool_type(pool),
        "active": active,
        "capacity": capacity if active else None,
        "allocation": allocation if active else None,
        "available": available if active else None,
        "used_pct": round(100.0 * allocation / capacity, 1) if active and capacity else None,
        "volumes": None,
    }
    if active:
        with _conn.libvirt_caught():
            entry["volumes"] = pool.numOfVolumes()
    return entry


def _snapshot_times(dom):
    from salt_kvm.xml.base import parse  # pylint: disable=import-outside-toplevel

    times = []
    for snap in dom.listAllSnapshots(0):
        with _conn.libvirt_caught():
            root = parse(snap.getXMLDesc(0))
            created = root.findtext("creationTime")
            times.append((int(created) if created else 0, snap.getName()))
    return sorted(times)


def _vms(conn, now):
    out = []
    for dom in conn.listAllDomains(0):
        with _conn.libvirt_caught():  # removed while we looked: left out
            times = _snapshot_times(dom)
            info = dom.info()  # state, max memory KiB, memory KiB, vCPUs, CPU time
            entry = {
                "name": dom.name(),
                "state": _conn.DOMAIN_STATES.get(info[0], "unknown"),
                "autostart": bool(dom.autostart()),
                "vcpus": info[3],
                "memory": info[1] * 1024,
                "snapshots": len(times),
                "oldest_snapshot": times[0][1] if times else None,
                "oldest_snapshot_age": max(0, int(now - times[0][0])) if times else None,
            }
            out.append(entry)
    return sorted(out, key=lambda v: v["name"])


def host_report(session: _conn.Session, now: Optional[float] = None) -> dict[str, Any]:
    """One host's bridges, libvirt networks, pools (usage), VMs and snapshot ages."""
    now = time.time() if now is None else now
    conn = session.conn
    with _conn.libvirt_errors("host report"):
        return {
            "bridges": _bridges(),
            "networks": _networks(conn),
            "pools": _pools(conn),
            "vms": _vms(conn, now),
        }


def _patterns(vms, path="vms"):
    if vms is None or vms == "":
        raise InvalidInput(
            path, "is required: VM names or glob patterns (a list, or comma-separated)"
        )
    if isinstance(vms, str):
        vms = [v.strip() for v in vms.split(",") if v.strip()]
    if (
        not isinstance(vms, (list, tuple))
        or not vms
        or not all(isinstance(v, str) and v for v in vms)
    ):
        raise InvalidInput(path, f"{vms!r} is not a list of VM names or patterns")
    return list(vms)


def select_vms(names: Iterable[str], vms: Any) -> list[str]:
    """The names (sorted) that match any of the glob patterns ``vms``."""
    patterns = _patterns(vms)
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def each_vm(
    session: _conn.Session,
    vms: Any,
    func: Callable[..., Any],
    *args: Any,
    skip: Optional[Callable[[Any], Optional[str]]] = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Call ``func(vm, *args, **kwargs)`` for every VM of this host matching ``vms``.

    ``func`` is an execution function (``kvm.snapshot_create``,
    ``kvm.snapshot_revert``). ``skip(dom)`` may return a comment to leave a
    VM alone (result True, nothing done). Returns ``{"result": bool, "vms":
    {vm: {"result": bool, "changed": bool, "return" or "comment": ...}}}``;
    one VM failing does not stop the others.
    """
    patterns = _patterns(vms)
    domains = {d.name(): d for d in session.conn.listAllDomains(0)}
    out = {}
    for vm in select_vms(domains, patterns):
        try:
            why = skip(domains[vm]) if skip else None
            if why:
                out[vm] = {"result": True, "changed": False, "comment": why}
                continue
            out[vm] = {"result": True, "changed": True, "return": func(vm, *args, **kwargs)}
        except Exception as exc:  # noqa: BLE001  pylint: disable=broad-except
            text = str(exc).strip()
            out[vm] = {
                "result": False,
                "changed": False,
                "comment": text.splitlines()[0] if text else repr(exc),
            }
    return {"result": all(v["result"] for v in out.values()), "vms": out}


def _has_snapshot(name):
    def check(dom):
        if name and name in dom.snapshotListNames(0):
            return f"snapshot '{name}' exists already"
        return None

    return check


def snapshot_vms(
    session: _conn.Session, vms: Any, name: str, create: Callable[..., Any], **kwargs: Any
) -> dict[str, Any]:
    """Snapshot the matching VMs with ``create(vm, name, **kwargs)`` (``kvm.snapshot_create``).

    A VM that already has a snapshot ``name`` is left alone (result True,
    changed False), so the runner can be re-run after a partial failure.
    """
    return each_vm(session, vms, create, name, skip=_has_snapshot(name), **kwargs)


def revert_vms(
    session: _conn.Session, vms: Any, name: Optional[str], revert: Callable[..., Any]
) -> dict[str, Any]:
    """Revert the matching VMs to snapshot ``name`` with ``revert(vm, name)``
    (``kvm.snapshot_revert``)."""
    if not name:
        raise InvalidInput("name", "is required: the snapshot to revert to")
    return each_vm(session, vms, revert, name)


# --- master side -------------------------------------------------------------


def _drift(ret):
    """``state.apply kvm test=True`` return -> ``{"pending": {id: changes}, "errors": [...]}``."""
    if isinstance(ret, list):  # render errors (a bad pillar): a list of strings
        return {"pending": {}, "errors": [str(e) for e in ret]}
    if not isinstance(ret, dict):
        return {"pending": {}, "errors": [str(ret)]}
    pending, errors = {}, []
    for key, state in ret.items():
        if not isinstance(state, dict):
            errors.append(str(state))
            continue
        parts = key.split("_|-")
        sid = parts[1] if len(parts) > 1 else key
        if state.get("result") is False:
            errors.append(f"{sid}: {state.get('comment', '')}")
        elif state.get("changes"):
            pending[sid] = state["changes"]
    return {"pending": pending, "errors": errors}


def _entry(value, drift):
    """One host's return of the report job -> ``{"report", "drift", "error"}``."""
    entry = {"report": None, "drift": None, "error": None}
    if not isinstance(value, dict) or value.get("failed"):
        entry["error"] = "no return (minion down or timed out)"
        return entry
    ret = value.get("ret", value)
    if not isinstance(ret, dict):
        entry["error"] = str(ret)
        return entry
    host = ret.get("kvm.host_report")
    if isinstance(host, dict):
        entry["report"] = host
    else:
        entry["error"] = str(host)
    if drift:
        entry["drift"] = _drift(ret.get("state.apply"))
    return entry


def summarise(hosts: dict[str, Any]) -> dict[str, Any]:
    """``{"hosts": n, "in_line": [...], "drifted": [...], "failed": [...]}``."""
    summary: dict[str, Any] = {"hosts": len(hosts), "in_line": [], "drifted": [], "failed": []}
    for minion, entry in sorted(hosts.items()):
        drift = entry.get("drift") or {}
        if entry["error"] or drift.get("errors"):
            summary["failed"].append(minion)
        elif drift.get("pending"):
            summary["drifted"].append(minion)
        else:
            summary["in_line"].append(minion)
    return summary


def report(
    client: Any,
    tgt: Union[str, list[str]] = "*",
    *,
    tgt_type: str = "glob",
    drift: bool = True,
    timeout: int = 120,
) -> dict[str, Any]:
    """Gather :func:`host_report` (and the drift) from every targeted host.

    One job per host: ``kvm.host_report`` plus, with ``drift``,
    ``state.apply kvm test=True`` in the same (compound) job. A host that does
    not answer within ``timeout`` is reported as such.
    Returns ``{"hosts": {minion: {"report", "drift", "error"}}, "summary": ...}``.
    """
    funs: list[str] = ["kvm.host_report"]
    args: list[list[Any]] = [[]]
    if drift:
        funs.append("state.apply")
        args.append([DRIFT_SLS, {"test": True, "__kwarg__": True}])
    hosts = {}
    for item in client.cmd_iter(
        tgt, funs, args, tgt_type=tgt_type, timeout=timeout, expect_minions=True
    ):
        for minion, value in (item or {}).items():
            hosts[minion] = _entry(value, drift)
    hosts = dict(sorted(hosts.items()))
    return {"hosts": hosts, "summary": summarise(hosts)}


def default_snapshot_name(now: Optional[float] = None) -> str:
    """One name for a fleet-wide snapshot run: ``fleet-YYYYmmdd-HHMMSS`` (UTC)."""
    return time.strftime("fleet-%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))


def vm_action(
    client: Any,
    tgt: Union[str, list[str]],
    vms: Any,
    fun: str,
    *,
    args: Iterable[Any] = (),
    kwargs: Optional[dict[str, Any]] = None,
    tgt_type: str = "glob",
    batch: Union[str, int] = "10%",
    timeout: int = 300,
    expected: Optional[Iterable[str]] = None,
) -> dict[str, Any]:
    """Run ``fun VMS *args **kwargs`` (``kvm.snapshot_vms`` / ``kvm.revert_vms``)
    on the targeted hosts, ``batch`` at a time (Salt's batch mode).

    ``expected``: the minions the target matches (the runner asks the
    master); those that do not answer are reported as failed.
    Returns ``{"result": bool, "vms": {"host/vm": {...}}, "hosts": {host: {...}}}``.
    """
    patterns = _patterns(vms)
    arg = [patterns, *args]
    kwargs = {k: v for k, v in (kwargs or {}).items() if not str(k).startswith("__")}
    if kwargs:
        arg.append(dict(kwargs, __kwarg__=True))
    per_vm: dict[str, Any] = {}
    hosts: dict[str, dict[str, Any]] = {}
    for ret in client.cmd_batch(
        tgt, fun, arg=arg, tgt_type=tgt_type, batch=str(batch), timeout=timeout
    ):
        for minion, value in (ret or {}).items():
            if isinstance(value, dict) and isinstance(value.get("vms"), dict):
                vms_ret = value["vms"]
                hosts[minion] = {
                    "result": all(v.get("result") is True for v in vms_ret.values()),
                    "vms": len(vms_ret),
                }
                for vm, vret in vms_ret.items():
                    per_vm[f"{minion}/{vm}"] = vret
            elif value in ({}, None):
                hosts[minion] = {"result": False, "comment": "no return (timed out)"}
            else:
                hosts[minion] = {
                    "result": False,
                    "comment": str(value).strip().splitlines()[0]
                    if str(value).strip()
                    else repr(value),
                }
    for minion in expected or ():
        hosts.setdefault(
            minion, {"result": False, "comment": "no return (minion down or timed out)"}
        )
    hosts = dict(sorted(hosts.items()))
    result = bool(hosts) and all(h["result"] for h in hosts.values())
    return {"result": result, "vms": dict(sorted(per_vm.items())), "hosts": hosts}


# --- output ------------------------------------------------------------------


def _size(num):
    if num is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(num) < 1024 or unit == "P":
            return f"{num:.0f}{unit}" if unit == "B" else f"{num:.1f}{unit}"
        num /= 1024.0
    return str(num)  # pragma: no cover


def _age(seconds):
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(headers: list[str], rows: list[list[Any]], *, indent: str = "  ") -> list[str]:
    rows = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def format_report(data: dict[str, Any]) -> str:
    """:func:`report`'s data as text: one block of tables per host, then a summary."""
    lines = []
    for minion, entry in sorted(data["hosts"].items()):
        lines.append(f"{minion}")
        if entry.get("error"):
            lines.append(f"  error: {entry['error']}")
        rep = entry.get("report") or {}
        if rep:
            if rep.get("bridges"):
                lines += _table(
                    ["bridge", "state", "ports"],
                    [[b["name"], b["state"], ",".join(b["ports"]) or "-"] for b in rep["bridges"]],
                )
            else:
                lines.append("  bridges: none")
            if rep.get("networks"):
                lines += _table(
                    ["network", "active", "autostart", "bridge"],
                    [
                        [
                            n["name"],
                            "yes" if n["active"] else "no",
                            "yes" if n["autostart"] else "no",
                            n["bridge"] or "-",
                        ]
                        for n in rep["networks"]
                    ],
                )
            else:
                lines.append("  networks: none")
            if rep.get("pools"):
                lines += _table(
                    ["pool", "type", "active", "capacity", "used", "used%", "volumes"],
                    [
                        [
                            p["name"],
                            p["type"],
                            "yes" if p["active"] else "no",
                            _size(p["capacity"]),
                            _size(p["allocation"]),
                            "-" if p["used_pct"] is None else f"{p['used_pct']}%",
                            "-" if p["volumes"] is None else p["volumes"],
                        ]
                        for p in rep["pools"]
                    ],
                )
            else:
                lines.append("  pools: none")
            if rep.get("vms"):
                lines += _table(
                    ["vm", "state", "autostart", "vcpus", "memory", "snapshots", "oldest", "age"],
                    [
                        [
                            v["name"],
                            v["state"],
                            "yes" if v.get("autostart") else "no",
                            v.get("vcpus", "-"),
                            _size(v.get("memory")),
                            v["snapshots"],
                            v["oldest_snapshot"] or "-",
                            _age(v["oldest_snapshot_age"]),
                        ]
                        for v in rep["vms"]
                    ],
                )
            else:
                lines.append("  vms: none")
        drift = entry.get("drift")
        if drift is not None:
            if drift["errors"]:
                lines.append(f"  drift: ERROR {len(drift['errors'])}")
                lines += [f"    {e}" for e in drift["errors"]]
            elif drift["pending"]:
                lines.append(f"  drift: {len(drift['pending'])} state(s) would change")
                for sid, changes in sorted(drift["pending"].items()):
                    what = ", ".join(sorted(changes)) if isinstance(changes, dict) else changes
                    lines.append(f"    {sid}: {what}")
            else:
                lines.append("  drift: none (in line with its pillar)")
        lines.append("")
    summary = data.get("summary") or summarise(data["hosts"])
    if not summary["hosts"]:
        return "no hosts matched the target\n"
    lines.append(
        f"{summary['hosts']} host(s): {len(summary['in_line'])} in line with their pillar, "
        f"{len(summary['drifted'])} drifted, {len(summary['failed'])} failed"
        + (f" ({', '.join(summary['failed'])})" if summary["failed"] else "")
    )
    return "\n".join(lines) + "\n"
