"""Storage pools: every libvirt pool type, the ``kvm.pool_*`` functions and states.

A pool is declared with the pillar's keys (``type``, ``target``, ``source``,
``autostart``, ``build``, ``force``). :func:`pool_present` defines it, builds
its storage when that is needed (a directory, a filesystem, a partition table,
a volume group) without ever overwriting storage that already exists unless
``build: force``, starts it and sets autostart; drift in the definition is
shown as an XML diff and fixed in place (the pool is restarted), except a
change of what holds the data (type, source devices, names or hosts), which is
refused unless ``force: True``.

Secrets (iSCSI CHAP passwords, Ceph keys) given as ``source.auth.secret`` go
into a private libvirt secret whose usage name is ``salt-kvm/<pool>``; the pool
references it, and the value never appears in returns, changes, logs or errors.

Volumes live in :mod:`salt_kvm.storage_volumes`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import shutil
import subprocess  # nosec B404  # fixed argument lists, never a shell
import tempfile
from typing import Any, Optional

from salt_kvm import depends, plan, pool_types, schema
from salt_kvm.conn import libvirt, libvirt_errors, libvirt_message, memo_key
from salt_kvm.errors import InvalidInput, KvmError, NotFound, Refused
from salt_kvm.plan import Changes, Plan, Undo
from salt_kvm.xml import storage as sxml
from salt_kvm.xml.base import xml_diff

log = logging.getLogger(__name__)

POOLS_KEY = memo_key("storage", "pools")

_STATES = {0: "inactive", 1: "building", 2: "running", 3: "degraded", 4: "inaccessible"}

#: source keys whose change would change what holds the pool's data
DATA_SOURCE_KEYS = ("devices", "dir", "name", "hosts", "format")

#: pool types whose storage ``build`` makes (the others are only started)
BUILD_FLAGS = {"none": 0, "no_overwrite": 4, "overwrite": 8}  # VIR_STORAGE_POOL_BUILD_*

HIDDEN = "(hidden)"

INACTIVE_XML = 1  # VIR_STORAGE_XML_INACTIVE: the persistent definition


# --- listings ------------------------------------------------------------------


def _load_pools(session):
    out = {}
    for pool in session.conn.listAllStoragePools(0):
        try:
            out[pool.name()] = {
                "obj": pool,
                "xml": pool.XMLDesc(0),
                "active": bool(pool.isActive()),
                "autostart": bool(pool.autostart()),
                "persistent": bool(pool.isPersistent()),
            }
        except libvirt.libvirtError:  # raw: vanished while listing
            continue
    return out


def pools(session: Any) -> dict[str, dict[str, Any]]:
    """``{name: {obj, xml, active, autostart, persistent}}``, once per run."""
    return session.memo(POOLS_KEY, lambda: _load_pools(session))


def invalidate(session: Any) -> None:
    """Forget every storage listing of the run (pools, volumes, parsed definitions)."""
    session.invalidate("storage:")


def lookup_pool(session: Any, name: str) -> dict[str, Any]:
    """The listing entry of pool ``name`` (:func:`pools`); NotFound when it is not defined."""
    entry = pools(session).get(name)
    if entry is None:
        raise NotFound(f"pool '{name}' does not exist on {session.uri}")
    return entry


def _describe(entry, with_volumes=False):
    model = sxml.Pool(entry["xml"])
    out = {
        "name": model.name,
        "uuid": model.uuid,
        "type": model.type,
        "active": entry["active"],
        "autostart": entry["autostart"],
        "persistent": entry["persistent"],
        "capacity": model.capacity,
        "allocation": model.allocation,
        "available": model.available,
        "target": model.target,
        "source": _public_source(model.source),
    }
    pool = entry["obj"]
    if with_volumes:
        with libvirt_errors(f"pool '{model.name}'"):
            state = pool.info()[0]
            out["state"] = _STATES.get(state, str(state))
            out["volumes"] = pool.numOfVolumes() if entry["active"] else None
    else:
        out["state"] = "running" if entry["active"] else "inactive"
    return out


def _public_source(source):
    """The source as shown: auth without anything secret (only the secret's reference)."""
    source = dict(source)
    if "auth" in source:
        source["auth"] = {k: v for k, v in source["auth"].items() if k != "secret"}
    return source


# --- execution functions ---------------------------------------------------------


def pool_list(session: Any) -> dict[str, dict[str, Any]]:
    """``{name: {type, state, autostart, capacity, allocation, available, target}}``."""
    out = {}
    for name, entry in sorted(pools(session).items()):
        info = _describe(entry)
        out[name] = {
            k: info[k]
            for k in (
                "type",
                "state",
                "active",
                "autostart",
                "capacity",
                "allocation",
                "available",
                "target",
            )
        }
    return out


def pool_show(session: Any, name: str) -> dict[str, Any]:
    """Everything about one pool: type, state, autostart, sizes, target, source, volume count,
    XML."""
    schema.validate(schema.OBJNAME, name, "name")
    entry = lookup_pool(session, name)
    info = _describe(entry, with_volumes=True)
    return info


def _spec(name, kwargs, path=None):
    """Validate a pool's arguments (the pillar keys) with the pillar's own schema."""
    spec = schema.validate_args(schema.POOL, name, kwargs, name_field=schema.OBJNAME, path=path)
    if spec.get("volumes"):
        raise InvalidInput(
            f"{path or name}:volumes", "declare volumes with kvm.volume_present (the formula does)"
        )
    spec = plan.declared(spec, state_only=("purge",))  # purge: only kvm.pool_absent's
    if spec.get("target"):
        spec["target"] = os.path.normpath(
            spec["target"]
        )  # libvirt reports it without a trailing '/'
    source = spec.get("source") or {}
    if source.get("dir") and not source["dir"].startswith("/") and source.get("format") != "cifs":
        raise InvalidInput(
            f"{path or name}:source:dir",
            f"{source['dir']!r} is not an absolute path (only a cifs share name is relative)",
        )
    return spec


def pool_define(  # pylint: disable=redefined-builtin
    session: Any,
    name: str,
    *,
    type: Optional[str] = None,
    target: Optional[str] = None,
    source: Optional[dict[str, Any]] = None,
    autostart: Optional[bool] = None,
) -> dict[str, Any]:
    """Define (not start) a pool; its secret is stored first. Returns :func:`pool_show`."""
    spec = _spec(name, {"type": type, "target": target, "source": source, "autostart": autostart})
    if name in pools(session):
        raise KvmError(f"pool '{name}' is already defined (use kvm.pool_present to change it)")
    _define(session, name, spec)
    if autostart is not None:
        pool_autostart(session, name, enable=autostart)
    invalidate(session)
    return pool_show(session, name)


def _pool_obj(session, name):
    schema.validate(schema.OBJNAME, name, "name")
    return lookup_pool(session, name)["obj"]


def pool_build(session: Any, name: str, *, overwrite: bool = False) -> bool:
    """Build the pool's storage; existing storage is never overwritten unless ``overwrite``."""
    pool = _pool_obj(session, name)
    flags = (
        BUILD_FLAGS["overwrite"]
        if overwrite
        else _build_flags_for(sxml.Pool(lookup_pool(session, name)["xml"]).type)
    )
    with libvirt_errors(f"building pool '{name}'"):
        pool.build(flags)
    invalidate(session)
    return True


def pool_start(session: Any, name: str, *, build: bool = False) -> bool:
    """Start the pool (building its storage first with ``build``); True."""
    pool = _pool_obj(session, name)
    with libvirt_errors(f"starting pool '{name}'"):
        if not pool.isActive():
            if build:
                pool.build(_build_flags_for(sxml.Pool(pool.XMLDesc(0)).type))
            pool.create(0)
    invalidate(session)
    return True


def pool_stop(session: Any, name: str) -> bool:
    """Stop the pool (its storage and volumes stay); True."""
    pool = _pool_obj(session, name)
    with libvirt_errors(f"stopping pool '{name}'"):
        if pool.isActive():
            pool.destroy()
    invalidate(session)
    return True


def pool_refresh(session: Any, name: str) -> bool:
    """Let libvirt read the pool's volumes again; True."""
    pool = _pool_obj(session, name)
    with libvirt_errors(f"refreshing pool '{name}'"):
        pool.refresh(0)
    invalidate(session)
    return True


def pool_autostart(session: Any, name: str, *, enable: bool = True) -> bool:
    """Start the pool when libvirt starts (or not); ``enable``."""
    pool = _pool_obj(session, name)
    with libvirt_errors(f"setting autostart of pool '{name}'"):
        pool.setAutostart(1 if enable else 0)
    invalidate(session)
    return bool(enable)


def _undefine(
    session: Any, name: str, *, what: Optional[str] = None, drop_secret: bool = True
) -> None:
    """Stop pool ``name`` and undefine it (its storage and volumes stay), drop salt-kvm's
    secret of it (unless not ``drop_secret``: it is defined again at once) and forget the
    listings; a libvirt error is raised as ``KvmError("<what>: <libvirt's message>")``."""
    pool = lookup_pool(session, name)["obj"]
    try:
        with libvirt_errors(what or f"pool '{name}'"):
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        if drop_secret:
            _drop_secret(session, name)
    finally:
        invalidate(session)


def pool_undefine(session: Any, name: str) -> bool:
    """Stop and undefine the pool (its storage and volumes stay); drop salt-kvm's secret."""
    schema.validate(schema.OBJNAME, name, "name")
    _undefine(session, name, what=f"undefining pool '{name}'")
    return True


def pool_delete(session: Any, name: str, *, force: bool = False) -> bool:
    """Delete the pool's volumes and its storage (the directory, the VG...), then undefine it.

    Refused while a volume is in use by a VM, unless ``force``.
    """
    schema.validate(schema.OBJNAME, name, "name")
    entry = lookup_pool(session, name)
    _purge(session, name, entry, force)
    invalidate(session)
    return True


# --- secrets ----------------------------------------------------------------------


#: host-local key of the HMAC that tells whether a libvirt secret holds the declared value
#: (0600, made on first use). A plain hash in the secret's description, which any read-only
#: libvirt client can read, would let a weak CHAP password be brute-forced offline; the
#: value itself cannot be read back (the secret is private).
SECRET_KEY_FILE = "/var/lib/salt-kvm/secret-hmac.key"  # nosec B105  # a path, not a password


def _hmac_key(create=False):
    """The HMAC key (``None`` when there is none yet and not ``create``)."""
    broken = False
    try:
        with open(SECRET_KEY_FILE, "rb") as fh:
            key = fh.read()
        if len(key) >= 32:
            return key
        broken = True
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KvmError(f"cannot read {SECRET_KEY_FILE}: {exc.strerror}") from None
    if not create:
        return None
    directory = os.path.dirname(SECRET_KEY_FILE)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory)  # 0600
        try:
            os.write(fd, os.urandom(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        if broken:
            os.replace(tmp, SECRET_KEY_FILE)
        else:
            with contextlib.suppress(FileExistsError):  # another run made it first: use that one
                os.link(tmp, SECRET_KEY_FILE)
            os.unlink(tmp)
        with open(SECRET_KEY_FILE, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise KvmError(f"cannot make {SECRET_KEY_FILE}: {exc.strerror}") from None


def _digest(secret_uuid, value, key):
    """HMAC-SHA256 of the secret's value, keyed by the host-local key (``None`` without a key)."""
    if key is None:
        return None
    return hmac.new(key, f"{secret_uuid}:{value}".encode(), hashlib.sha256).hexdigest()


def _find_secret(session, pool_name):
    usage = sxml.secret_usage(pool_name)
    for usage_type in (libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, libvirt.VIR_SECRET_USAGE_TYPE_CEPH):
        try:
            return session.conn.secretLookupByUsage(usage_type, usage)
        except libvirt.libvirtError:  # raw: not found under this usage type: try the next one
            continue
    return None


def _secret_state(session, pool_name, auth):
    """``None`` if salt-kvm's secret for the pool holds ``auth['secret']``, else what must
    change."""
    secret = _find_secret(session, pool_name)
    if secret is None:
        return "create"
    try:
        model = sxml.Secret(secret.XMLDesc(0))
    except libvirt.libvirtError:  # raw: an unreadable secret is rewritten
        return "update"
    want_type = "ceph" if auth["type"] == "ceph" else "iscsi"
    if model.usage_type != want_type:
        return "recreate"
    have = (model.description or "").split("hmac ")[-1]
    if not hmac.compare_digest(
        have.encode(), (_digest(secret.UUIDString(), auth["secret"], _hmac_key()) or "-").encode()
    ):
        return "update"
    return None


def _store_secret(session, pool_name, auth):
    """Create or update the pool's libvirt secret; return its usage name. Never logs the value."""
    usage = sxml.secret_usage(pool_name)
    usage_type = "ceph" if auth["type"] == "ceph" else "iscsi"
    secret = _find_secret(session, pool_name)
    # libvirt's message names the usage, never the value
    with libvirt_errors(f"storing the secret of pool '{pool_name}'"):
        if secret is not None and sxml.Secret(secret.XMLDesc(0)).usage_type != usage_type:
            secret.undefine()
            secret = None
        if secret is None:
            secret = session.conn.secretDefineXML(
                sxml.Secret.build(usage, usage_type, description="salt-kvm").to_xml(), 0
            )
        sid = secret.UUIDString()
        desc = f"salt-kvm pool secret, hmac {_digest(sid, auth['secret'], _hmac_key(create=True))}"
        secret = session.conn.secretDefineXML(
            sxml.Secret.build(usage, usage_type, description=desc, uuid=sid).to_xml(), 0
        )
        if usage_type == "ceph":
            try:
                value = base64.b64decode(auth["secret"], validate=True)
            except ValueError:
                raise InvalidInput("source:auth:secret", "is not a base64 Ceph key") from None
        else:
            value = auth["secret"].encode()
        secret.setValue(value, 0)
    return usage


def _drop_secret(session, pool_name):
    secret = _find_secret(session, pool_name)
    if secret is not None:
        with contextlib.suppress(libvirt.libvirtError):
            secret.undefine()


def _xml_source(pool_name, source):
    """The source as it goes into XML: a secret value becomes a reference to salt-kvm's secret."""
    if not source or "auth" not in source:
        return source
    source = dict(source)
    auth = dict(source["auth"])
    if "secret" in auth:
        auth.pop("secret")
        auth.pop("secret_uuid", None)
        auth["secret_usage"] = sxml.secret_usage(pool_name)
    elif not auth.get("secret_uuid") and not auth.get("secret_usage"):
        raise InvalidInput("source:auth", "needs secret, secret_uuid or secret_usage")
    source["auth"] = auth
    return source


def _define(session, name, spec, uuid=None, xml=None):
    """Define pool ``name`` from ``spec`` (or, to change it in place, from ``xml``)."""
    source = spec.get("source")
    if source and source.get("auth", {}).get("secret"):
        _store_secret(session, name, source["auth"])
    xml = (
        xml
        or sxml.Pool.build(
            name,
            spec["type"],
            target=spec.get("target"),
            source=_xml_source(name, source),
            uuid=uuid,
        ).to_xml()
    )
    try:
        with libvirt_errors(f"defining pool '{name}'"):
            return session.conn.storagePoolDefineXML(xml, 0)
    except KvmError:
        if name not in _load_pools(session):
            _drop_secret(session, name)  # nothing references it
        raise


# --- building storage without overwriting it ----------------------------------------


def _build_flags_for(ptype):
    return BUILD_FLAGS["no_overwrite"] if pool_types.get(ptype).build_no_overwrite else 0


def _probe(device, what):
    """``blkid`` value ``what`` (TYPE, PTTYPE) of ``device``; ``None`` when it holds none."""
    try:
        proc = subprocess.run(
            ["blkid", "-p", "-o", "value", "-s", what, "--", device],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KvmError(f"cannot probe {device}: {exc}") from None
    value = proc.stdout.strip()
    return value or None


def _vg_exists(vg_name):
    if not shutil.which("vgs"):
        return False
    proc = subprocess.run(
        ["vgs", "--noheadings", "-o", "vg_name", "--", vg_name],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0 and proc.stdout.strip() == vg_name


def build_plan(spec: Any) -> Optional[tuple[str, int]]:
    """What building the declared pool would do: ``(description, flags)`` or ``None``.

    Existing storage of the declared kind is used as it is. Storage of another
    kind is overwritten only with ``build: force``; otherwise this raises
    :class:`~salt_kvm.errors.Refused`.
    """
    if spec.get("build") is False:
        return None
    ptype, target, source = spec["type"], spec.get("target"), spec.get("source", {})
    force = spec.get("build") == "force"
    mkdir = bool(target) and not os.path.isdir(target)
    build = pool_types.get(ptype).build
    if build == "mkdir":
        return (f"create directory {target}", 0) if mkdir else None
    if build == "filesystem":
        device = source["devices"][0]
        want = source.get("format") or "auto"
        have = _probe(device, "TYPE")
        if have is None:
            if want == "auto":
                raise KvmError(
                    f"{device} holds no filesystem; declare source.format (like ext4) to make one"
                )
            fstype = want
            return (
                f"make the {fstype} filesystem on {device}"
                + (f" and create directory {target}" if mkdir else ""),
                BUILD_FLAGS["no_overwrite"],
            )
        if want in ("auto", have):
            return (f"create directory {target}", 0) if mkdir else None
        if force:
            return (
                f"overwrite the {have} filesystem on {device} with {want}",
                BUILD_FLAGS["overwrite"],
            )
        raise Refused(
            f"{device} holds a {have} filesystem, declared {want}; set build: force to overwrite it"
        )
    if build == "label":
        device = source["devices"][0]
        want = source.get("format")
        have = _probe(os.path.realpath(device), "PTTYPE")
        if have is None:
            return (
                f"write a {want or 'dos'} partition table on {device}",
                BUILD_FLAGS["no_overwrite"],
            )
        if want in (None, have):
            return None
        if force:
            return (
                f"overwrite the {have} partition table on {device} with {want}",
                BUILD_FLAGS["overwrite"],
            )
        raise Refused(
            f"{device} holds a {have} partition table, declared {want}; set build: force to "
            "overwrite it"
        )
    if build == "volume_group":
        vg_name = source["name"]
        if _vg_exists(vg_name):
            return None
        devices = source.get("devices")
        if not devices:
            raise KvmError(
                f"volume group {vg_name} does not exist and source.devices is not given "
                "to create it"
            )
        for device in devices:
            have = _probe(device, "TYPE")
            if have and not force:
                raise Refused(
                    f"{device} holds {have} data; set build: force to make it a physical volume "
                    f"of {vg_name}"
                )
        return (
            f"create volume group {vg_name} on {', '.join(devices)}",
            BUILD_FLAGS["overwrite"] if force else BUILD_FLAGS["no_overwrite"],
        )
    return None


# --- the states -------------------------------------------------------------------------


def _declared_source(name, source):
    """The declared source as it will read back (secret replaced by its reference)."""
    if not source:
        return {}
    out = _xml_source(name, source)
    return out


def _source_changes(current, declared):
    """``{sub-key: (old, new)}`` of declared source keys that differ."""
    diffs = {}
    for key, want in declared.items():
        have = current.get(key)
        if key == "auth":
            have_cmp = {k: v for k, v in (have or {}).items() if k in want}
            if plan.normalise(have_cmp) != plan.normalise(want):
                diffs[key] = (have, want)
        elif key in ("devices", "hosts"):
            if list(have or []) != list(want):
                diffs[key] = (have, want)
        elif have != want:
            diffs[key] = (have, want)
    return diffs


@dataclasses.dataclass(frozen=True)
class PoolPlan:
    """What :meth:`PoolResource.apply` needs beyond the changes: the pool as read
    (``None``: new) and what building it does (:func:`build_plan`, when it is built)."""

    current: Optional[dict[str, Any]]
    build: Optional[tuple[str, int]] = None


class PoolResource(plan.Resource):
    def __init__(self, session: Any, name: str, spec: dict[str, Any]) -> None:
        self.session = session
        self.name = name
        self.spec = spec
        self.what = f"{spec.get('type', '')} pool '{name}'".strip()

    # -- read
    def read(self) -> Optional[dict[str, Any]]:
        entry = pools(self.session).get(self.name)
        if entry is None:
            return None
        model = sxml.Pool(entry["xml"])
        return {
            "type": model.type,
            "target": model.target,
            "source": model.source,
            "running": entry["active"],
            "autostart": entry["autostart"],
            "uuid": model.uuid,
            "xml": entry["xml"],
        }

    def _definition(self) -> str:
        """The pool's persistent definition as libvirt keeps it (all of it, also what
        salt-kvm does not model)."""
        with libvirt_errors(f"pool '{self.name}'"):
            return lookup_pool(self.session, self.name)["obj"].XMLDesc(INACTIVE_XML)

    def declared_xml(self, current: Optional[dict[str, Any]] = None) -> str:
        """The declared definition: the current one edited in place (its ``<permissions>``,
        a source's ``<protocol>`` or mount options are kept), or a new one for a new pool
        or a (forced) change of type."""
        spec = self.spec
        source = _xml_source(self.name, spec.get("source"))
        if current is None or current["type"] != spec["type"]:
            uuid = current["uuid"] if current else None
            return sxml.Pool.build(
                self.name, spec["type"], target=spec.get("target"), source=source, uuid=uuid
            ).to_xml()
        return sxml.Pool(self._definition()).edit(target=spec.get("target"), source=source).to_xml()

    def current_xml(self, current: Optional[dict[str, Any]]) -> str:
        """The current definition as libvirt keeps it (for the diff)."""
        return sxml.Pool(self._definition()).edit().to_xml()

    def _summary(self) -> dict[str, Any]:
        out = {"type": self.spec["type"]}
        if self.spec.get("target"):
            out["target"] = self.spec["target"]
        if self.spec.get("source"):
            out["source"] = _public_source(_declared_source(self.name, self.spec["source"]))
        return out

    # -- plan
    def plan(self, current: Optional[dict[str, Any]]) -> Plan:
        spec = self.spec
        changes: dict[str, Any] = {}
        auth = (spec.get("source") or {}).get("auth") or {}
        if current is None:
            changes["pool"] = {"old": None, "new": self._summary()}
            build = build_plan(spec)
            if build:
                changes["build"] = {"old": None, "new": build[0]}
            if auth.get("secret"):
                changes["secret"] = {"old": None, "new": HIDDEN}
            changes["running"] = {"old": False, "new": True}
            if spec.get("autostart"):
                changes["autostart"] = {"old": False, "new": True}
            return plan.Plan(changes, existed=False, payload=PoolPlan(None, build))

        force = spec.get("force")
        if current["type"] != spec["type"]:
            if not force:
                raise Refused(
                    f"it is a {current['type']} pool; changing its type to {spec['type']} "
                    "changes what holds its data (set force: True to redefine it)"
                )
            changes["type"] = {"old": current["type"], "new": spec["type"]}
        if spec.get("target") and current["target"] != spec["target"]:
            changes["target"] = {"old": current["target"], "new": spec["target"]}
        declared_source = _declared_source(self.name, spec.get("source"))
        sdiff = _source_changes(current["source"], declared_source)
        if sdiff:
            data_keys = [k for k in sdiff if k in DATA_SOURCE_KEYS]
            if data_keys and not force and "type" not in changes:
                detail = "; ".join(
                    f"source.{k} is {sdiff[k][0]!r}, declared {sdiff[k][1]!r}" for k in data_keys
                )
                raise Refused(
                    f"{detail}: that changes what holds its data (set force: True to redefine it)"
                )
            changes["source"] = {
                "old": _public_source({k: current["source"].get(k) for k in sdiff}),
                "new": _public_source({k: v[1] for k, v in sdiff.items()}),
            }
        if auth.get("secret"):
            state = _secret_state(self.session, self.name, auth)
            if state:
                changes["secret"] = {"old": None if state == "create" else HIDDEN, "new": HIDDEN}
        redefine = any(k in changes for k in ("type", "target", "source"))
        if redefine:
            changes["definition"] = {
                "old": self.current_xml(current),
                "new": self.declared_xml(current),
            }
        build = None
        if redefine or not current["running"]:
            build = build_plan(spec)
            if build:
                changes["build"] = {"old": None, "new": build[0]}
        if not current["running"]:
            changes["running"] = {"old": False, "new": True}
        elif redefine:
            changes["running"] = {
                "old": "running the old definition",
                "new": "restarted with the declared one",
            }
        elif "secret" in changes:
            # a running pool keeps the credentials it started with: restart it so the
            # declared key is used (and proved) now, not at the next boot
            changes["running"] = {
                "old": "running with the previous secret",
                "new": "restarted with the declared one",
            }
        if spec.get("autostart") is not None and current["autostart"] != spec["autostart"]:
            changes["autostart"] = {"old": current["autostart"], "new": spec["autostart"]}
        return plan.Plan(changes, payload=PoolPlan(current, build))

    def verify(self, plan: Plan, after: Any) -> Changes:
        remaining = dict(self.plan(after).changes)
        remaining.pop("build", None)
        remaining.pop("secret", None)
        return remaining

    # -- apply
    def apply(self, plan: Plan, undo: Undo) -> None:
        spec, changes, current = self.spec, plan.changes, plan.payload.current
        conn = self.session.conn
        try:
            with libvirt_errors(f"pool '{self.name}'"):
                if current is None or "type" in changes:
                    if current is not None:
                        _undefine(self.session, self.name, drop_secret=False)
                    pool = _define(
                        self.session, self.name, spec, uuid=current["uuid"] if current else None
                    )
                elif "target" in changes or "source" in changes or "secret" in changes:
                    pool = _define(
                        self.session,
                        self.name,
                        spec,
                        uuid=current["uuid"],
                        xml=self.declared_xml(current),
                    )
                else:
                    pool = conn.storagePoolLookupByName(self.name)
                invalidate(self.session)
                if "running" in changes:
                    if pool.isActive():
                        pool.destroy()
                    build = plan.payload.build
                    if "build" in changes and build:
                        if spec.get("target") and not os.path.isdir(spec["target"]):
                            undo.record("made_dir", spec["target"])
                        pool.build(build[1])
                    pool.create(0)
                if "autostart" in changes:
                    pool.setAutostart(1 if spec["autostart"] else 0)
        finally:
            invalidate(self.session)

    def restore(self, before: Any, undo: Undo) -> Optional[str]:
        conn = self.session.conn
        done = []
        with contextlib.suppress(libvirt.libvirtError):
            pool = conn.storagePoolLookupByName(self.name)
            if pool.isActive():
                pool.destroy()
            if before is None:
                pool.undefine()
                done.append("removed the new pool definition")
        if before is None:
            _drop_secret(self.session, self.name)
            made_dir = undo.get("made_dir")
            if made_dir and pool_types.get(self.spec["type"]).makes_target_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(made_dir)
                    done.append(f"removed directory {made_dir}")
        else:
            try:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.storagePoolLookupByName(self.name).undefine()
                pool = conn.storagePoolDefineXML(before["xml"], 0)
                if before["running"]:
                    pool.create(0)
                pool.setAutostart(1 if before["autostart"] else 0)
                done.append("the previous definition" + (", running" if before["running"] else ""))
            # raw: logged, not raised: restore says it could not
            except libvirt.libvirtError as exc:
                log.warning("restoring pool %s failed: %s", self.name, libvirt_message(exc))
                return None
        invalidate(self.session)
        return "; ".join(done) or None

    def summary(self, plan: Plan, test: bool) -> str:
        changes = plan.changes
        base = super().summary(plan, test)
        if "pool" in changes:
            base = (
                f"{self.what} {'would be' if test else 'was'} defined"
                + (", built" if "build" in changes else "")
                + " and started"
            )
        if "definition" in changes:
            base += "; definition:\n" + xml_diff(
                changes["definition"]["old"], changes["definition"]["new"]
            )
        return base


def pool_present(session: Any, name: str, *, test: bool = False, **kwargs: Any) -> dict[str, Any]:
    """State: the pool is defined as declared, built when needed, running, autostart as declared."""
    try:
        spec = _spec(name, kwargs)
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"pool '{name}': {exc}")
    resource = PoolResource(session, name, spec)
    return plan.ensure(name, resource, test=test)


def _pool_images(session, name, entry):
    """``{volume name: identity}`` of the pool's volumes: listed by libvirt when it
    runs, read from its target directory when a stopped file-backed pool has one
    (other stopped pools are started before a purge and checked then)."""
    from salt_kvm import storage_volumes  # pylint: disable=import-outside-toplevel  # it imports this module

    model = sxml.Pool(entry["xml"])
    if entry["active"]:
        return {
            v: storage_volumes.identity_of(session, name, v)
            for v in storage_volumes.volumes(session, name)
        }
    if model.type in depends.FILE_POOLS and model.target and os.path.isdir(model.target):
        return {
            f: depends.identity(os.path.join(model.target, f))
            for f in os.listdir(model.target)
            if os.path.isfile(os.path.join(model.target, f))
        }
    return None


def _guard_purge(session, name, entry):
    """Refuse to purge a pool while a VM uses one of its volumes or an image outside it builds on
    one."""
    images = _pool_images(session, name, entry)
    if not images:
        return
    index = depends.scan(session)
    mine = list(images.values())
    busy = []
    for vname, ident in sorted(images.items()):
        users, backs = depends.in_use(index, ident, exclude_images=mine)
        if users:
            busy.append(f"{vname} (used by {', '.join(users)})")
        if backs:
            busy.append(f"{vname} (the backing file of {', '.join(backs)})")
    if busy:
        raise Refused(
            f"purging would delete volumes in use: {'; '.join(busy)}; set force: True to delete "
            "them anyway"
        )


def _purge(session, name, entry, force):
    pool = entry["obj"]
    with libvirt_errors(f"pool '{name}'"):
        if not pool.isActive():
            pool.create(0)
        pool.refresh(0)
        vols = pool.listAllVolumes(0)
    if not force:
        invalidate(session)
        _guard_purge(session, name, pools(session)[name])
    ptype = sxml.Pool(entry["xml"]).type
    with libvirt_errors(f"purging pool '{name}'"):
        row = pool_types.get(ptype)
        if row.purge_volumes:
            for vol in vols:
                if vol.name() in row.purge_keeps:
                    continue
                vol.delete(0)
        pool.destroy()
        if row.purge_storage:
            try:
                pool.delete(0)
            # raw: re-raised unless this pool type's delete may fail
            except libvirt.libvirtError as exc:
                if not row.purge_storage_may_fail:
                    raise
                log.debug(
                    "pool %s: delete of the mount point failed: %s", name, libvirt_message(exc)
                )
        pool.undefine()
    _drop_secret(session, name)
    session.invalidate()


def pool_absent(
    session: Any, name: str, *, purge: bool = False, force: bool = False, test: bool = False
) -> dict[str, Any]:
    """State: the pool is not defined. ``purge`` also deletes its volumes and storage.

    Purging is refused while a volume is in use by a VM unless ``force``.
    """
    try:
        schema.validate(schema.OBJNAME, name, name)
        schema.validate(schema.Bool(), purge if purge is not None else False, f"{name}:purge")
        schema.validate(schema.Bool(), force if force is not None else False, f"{name}:force")
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"pool '{name}': {exc}")

    def exists():
        entry = pools(session).get(name)
        if entry is None:
            return None
        shown = _describe(entry)
        if not purge:  # the storage stays: its sizes are not among what goes
            shown = {
                k: v for k, v in shown.items() if k not in ("capacity", "allocation", "available")
            }
        return shown

    def guard(current):
        if purge and not force:
            _guard_purge(session, name, pools(session)[name])

    def remove(current):
        entry = pools(session)[name]
        if purge:
            _purge(session, name, entry, force)
            invalidate(session)
        else:
            _undefine(session, name)

    what = f"pool '{name}'"
    ret = plan.absent(name, what, exists, remove, test=test, guard=guard)
    if purge and ret["changes"]:
        ret["changes"]["purged"] = {"old": None, "new": "volumes and storage deleted"}
    if ret["changes"] and ret["result"] is not False:
        verb = "would be" if test else "was"
        if purge:
            ret["comment"] = f"{what} {verb} removed with its volumes and storage"
        else:
            ret["comment"] = (
                f"{what} {verb} undefined; its volumes and storage are kept "
                "(purge: True deletes them)"
            )
    return ret
