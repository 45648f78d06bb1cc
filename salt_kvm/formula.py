"""The ``kvm`` formula: pillar -> state data for each part.

``kvm/<part>.sls`` is a three-line ``#!py`` file that calls
``kvm.render_formula``; the work is here, so every part validates the whole
pillar first (a bad value anywhere fails the run before anything changes, also
when one part is applied alone) and renders states in dependency order.
"""

from __future__ import annotations

from typing import Any, Iterable

from salt_kvm import plan, schema

PARTS = ("bridges", "networks", "storage", "vms", "snapshots")


def state_id(kind: str, *names: Any) -> str:
    """The id of a state the formula renders: ``kvm-<kind>-<name>[-<name>...]``."""
    return "kvm-" + kind + "-" + "-".join(str(n) for n in names)


def _state(
    func: str, name: str, args: dict[str, Any], *, requires: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    body: list[dict[str, Any]] = [{"name": name}]
    body.extend({key: value} for key, value in args.items())
    if requires:
        body.append({"require": [dict([req]) for req in requires]})
    return {f"kvm.{func}": body}


def render_bridges(tree: dict[str, Any]) -> dict[str, Any]:
    """The ``bridge_present`` / ``bridge_absent`` states of a validated pillar."""
    out = {}
    for name, spec in tree.get("bridges", {}).items():
        args = plan.declared(spec, state_only=("absent",))
        if spec.get("absent"):
            out[state_id("bridge", name)] = _state(
                "bridge_absent", name, {"force": spec.get("force", False)}
            )
        else:
            out[state_id("bridge", name)] = _state("bridge_present", name, args)
    return out


def render_networks(tree: dict[str, Any]) -> dict[str, Any]:
    """The ``network_present`` / ``network_absent`` states of a validated pillar."""
    out = {}
    for name, spec in tree.get("networks", {}).items():
        args = plan.declared(spec, state_only=("absent",))
        if spec.get("absent"):
            out[state_id("network", name)] = _state(
                "network_absent", name, {"force": spec.get("force", False)}
            )
        else:
            out[state_id("network", name)] = _state("network_present", name, args)
    return out


def _volume_order(volumes):
    """Volume names with backing volumes of the same pool first."""
    ordered, seen = [], set()

    def visit(name):
        if name in seen or name not in volumes:
            return
        seen.add(name)
        backing = volumes[name].get("backing")
        if backing:
            visit(backing)
        ordered.append(name)

    for name in volumes:
        visit(name)
    return ordered


def render_storage(tree: dict[str, Any]) -> dict[str, Any]:
    """The pool and volume states of a validated pillar (backing volumes first)."""
    out = {}
    pools = tree.get("pools", {})
    for pname, spec in pools.items():
        pid = state_id("pool", pname)
        args = {k: v for k, v in spec.items() if k not in ("volumes", "absent")}
        volumes = spec.get("volumes", {})
        if spec.get("absent"):
            out[pid] = _state(
                "pool_absent", pname, {k: spec[k] for k in ("purge", "force") if k in spec}
            )
            continue
        out[pid] = _state("pool_present", pname, args)
        for vname in _volume_order(volumes):
            vspec = volumes[vname]
            vid = state_id("volume", pname, vname)
            reqs = [("kvm", pid)]
            backing = vspec.get("backing")
            if backing in volumes:
                reqs.append(("kvm", state_id("volume", pname, backing)))
            if vspec.get("absent"):
                out[vid] = _state(
                    "volume_absent",
                    vname,
                    {"pool": pname, "force": vspec.get("force", False)},
                    requires=reqs,
                )
            else:
                vargs = {"pool": pname}
                vargs.update(plan.declared(vspec, state_only=("absent",)))
                out[vid] = _state("volume_present", vname, vargs, requires=reqs)
    return out


def render_vms(tree: dict[str, Any]) -> dict[str, Any]:
    """One ``vm_present`` / ``vm_absent`` per VM; each requires the volumes, pools,
    bridges and networks of this pillar that it names (so ``kvm.vms`` applied alone
    works on what the host already has)."""
    out = {}
    for name, spec in tree.get("vms", {}).items():
        if spec.get("absent"):
            out[state_id("vm", name)] = _state(
                "vm_absent", name, {"purge": spec.get("purge", False)}
            )
            continue
        reqs = []
        for disk in spec.get("disks", []):
            pool = tree.get("pools", {}).get(disk["pool"])
            if pool is not None and disk["volume"] in pool.get("volumes", {}):
                reqs.append(("kvm", state_id("volume", disk["pool"], disk["volume"])))
            elif pool is not None:
                reqs.append(("kvm", state_id("pool", disk["pool"])))
            if pool is not None and disk.get("backing") in pool.get("volumes", {}):
                reqs.append(("kvm", state_id("volume", disk["pool"], disk["backing"])))
        for nic in spec.get("nics", []):
            if nic.get("bridge") in tree.get("bridges", {}):
                reqs.append(("kvm", state_id("bridge", nic["bridge"])))
            if nic.get("network") in tree.get("networks", {}):
                reqs.append(("kvm", state_id("network", nic["network"])))
        args = plan.declared(spec, state_only=("absent", "purge", "state"))
        if "state" in spec:
            args["run_state"] = spec["state"]  # Salt reserves ``state`` in a state's arguments
        out[state_id("vm", name)] = _state(
            "vm_present", name, args, requires=list(dict.fromkeys(reqs))
        )
    return out


def render_snapshots(tree: dict[str, Any]) -> dict[str, Any]:
    """The ``snapshots_retained`` states of a validated pillar."""
    out = {}
    for vm, spec in tree.get("snapshots", {}).items():
        declared_vm = tree.get("vms", {}).get(vm)
        reqs = (
            [("kvm", state_id("vm", vm))] if declared_vm and not declared_vm.get("absent") else []
        )
        out[state_id("snapshots", vm)] = _state("snapshots_retained", vm, dict(spec), requires=reqs)
    return out


_RENDER = {
    "bridges": render_bridges,
    "networks": render_networks,
    "storage": render_storage,
    "vms": render_vms,
    "snapshots": render_snapshots,
}


ALL = "all"

#: the comment of the one state ``state.apply kvm`` runs on a minion without a ``kvm`` pillar
NO_PILLAR = (
    "this minion has no kvm pillar, so the kvm formula has nothing to manage. "
    "Give it one in the pillar top file (see pillar.example); "
    "'salt-call pillar.item kvm' shows what it gets, 'salt-call kvm.validate_pillar' checks it"
)


def render(part: str, pillar: Any) -> dict[str, Any]:
    """Validate the whole ``kvm`` pillar, then return the states of ``part``
    (``all``: every part's states, in the order ``state.apply kvm`` runs them)."""
    if part != ALL and part not in _RENDER:
        raise schema.InvalidInput("part", f"{part!r} is not one of {', '.join(PARTS)}, {ALL}")
    tree = schema.validate_pillar(pillar)
    if part == ALL:
        out: dict[str, Any] = {}
        for name in PARTS:
            out.update(_RENDER[name](tree))
        return out
    return _RENDER[part](tree)


def _invalid(sid, exc):
    return {sid: {"kvm.pillar_invalid": [{"name": "kvm"}, {"message": str(exc)}]}}


def _missing(sid):
    return {sid: {"kvm.pillar_missing": [{"name": "kvm"}, {"message": NO_PILLAR}]}}


def render_or_fail(part: str, pillar: Any) -> dict[str, Any]:
    """Like :func:`render`, but a bad pillar becomes one failed state (``kvm.pillar_invalid``)
    whose comment is the message with its path (every error on its own line): Salt's
    ``#!py`` renderer would otherwise show a Python traceback around it. Nothing
    else is rendered, so nothing changes. No ``kvm`` pillar at all (``None`` or
    empty) renders one succeeding ``kvm.pillar_missing`` state that says so."""
    if pillar is None or pillar == {}:
        return _missing(state_id("pillar", part))
    try:
        return render(part, pillar)
    except schema.InvalidInput as exc:
        return _invalid(state_id("pillar", part), exc)


def render_init(pillar: Any) -> dict[str, Any]:
    """What ``kvm/init.sls`` renders: the four parts (``include``) for a valid
    pillar; for a bad one a single failed ``kvm.pillar_invalid`` state (so one
    typo is one failure, not one per part); for none a single succeeding
    ``kvm.pillar_missing`` state with a hint (the run exits 0: nothing is
    declared, nothing is wrong on the host)."""
    if pillar is None or pillar == {}:
        return _missing("kvm-pillar")
    try:
        schema.validate_pillar(pillar)
    except schema.InvalidInput as exc:
        return _invalid("kvm-pillar", exc)
    return {"include": [f"kvm.{part}" for part in PARTS]}
