"""cloud-init for VMs: the NoCloud seed ISO of a VM's ``cloud_init`` pillar key.

``cloud_init: {user_data, meta_data, network_config}`` becomes an ISO 9660 image
labelled ``cidata`` holding the files ``user-data``, ``meta-data`` and (when given)
``network-config``: cloud-init's NoCloud datasource finds it on any block device
by that label. The image is written with :mod:`pycdlib` (pure Python, no
``genisoimage`` subprocess) to :data:`SEED_DIR`\\ ``/<vm>.iso`` and attached to the
VM as a read-only SATA CD-ROM (after the pillar's own CD-ROMs).

* ``user_data``: a mapping is written as ``#cloud-config`` YAML; a string is
  written as it is (a ``#cloud-config`` document, a ``#!`` script, a MIME
  multipart).
* ``meta_data``: a mapping merged over the defaults ``instance-id:
  <vm>-<12 hex digits of the SHA-256 of user-data and network-config>`` and
  ``local-hostname: <vm>``. The instance-id follows the content on purpose:
  cloud-init runs its per-instance modules (users, ``runcmd``, SSH keys) only
  for an instance-id it has not seen, so a changed ``user_data`` applies at the
  VM's next boot. Pin ``meta_data: {instance-id: ...}`` to stop that.
* ``network_config``: a mapping (network config version 1 or 2) written as YAML,
  or a string as it is; no file when not given.

The seed is rewritten only when one of its files changes: the files read back
from the existing ISO are compared with the declared ones (an ISO's own bytes
hold its creation time), and a new seed replaces the old one by rename. State
output never shows the files (user data holds passwords and keys): only their
SHA-256 prefixes and sizes (:func:`summary`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from typing import Any, Optional

import yaml

from salt_kvm.errors import KvmError

log = logging.getLogger(__name__)

#: where the seed ISOs live (one ``<vm>.iso`` each); not a storage pool, so no pool purge sees them
SEED_DIR = "/var/lib/libvirt/salt-kvm/cloud-init"
LABEL = "cidata"
#: the files of a seed, with their ISO 9660 level-1 names (the Rock Ridge and Joliet names
#: are the real ones)
FILES = {"user-data": "/USERDATA.;1", "meta-data": "/METADATA.;1", "network-config": "/NETCONFI.;1"}


def seed_path(name: str) -> str:
    """Where the seed ISO of VM ``name`` is kept."""
    return os.path.join(SEED_DIR, f"{name}.iso")


def is_seed(path: Optional[str]) -> bool:
    """Whether ``path`` is a seed this module manages (a file directly in :data:`SEED_DIR`)."""
    if not path:
        return False
    return os.path.dirname(path) == SEED_DIR and path.endswith(".iso")


def _yaml(value):
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True)


def render(name: str, spec: dict[str, Any]) -> dict[str, bytes]:
    """``{file name: bytes}`` of the seed that ``spec`` (a validated ``cloud_init`` mapping)
    declares."""
    user = spec.get("user_data")
    if user is None:
        user_bytes = b"#cloud-config\n{}\n"
    elif isinstance(user, str):
        user_bytes = user.encode()
    else:
        user_bytes = ("#cloud-config\n" + _yaml(user)).encode()
    files = {"user-data": user_bytes}
    net = spec.get("network_config")
    if net is not None:
        files["network-config"] = (net if isinstance(net, str) else _yaml(net)).encode()
    digest = hashlib.sha256(user_bytes + b"\0" + files.get("network-config", b"")).hexdigest()[:12]
    meta = {"instance-id": f"{name}-{digest}", "local-hostname": name}
    meta.update(spec.get("meta_data") or {})
    files["meta-data"] = _yaml(meta).encode()
    return dict(sorted(files.items()))


def read(path: str) -> Optional[dict[str, bytes]]:
    """``{file name: bytes}`` of the seed ISO at ``path``, or ``None`` when it is missing or not
    a seed."""
    import pycdlib  # pylint: disable=import-outside-toplevel

    if not os.path.isfile(path):
        return None
    iso = pycdlib.PyCdlib()
    try:
        iso.open(path)
    except Exception:  # pylint: disable=broad-except  # a damaged or foreign file: rewritten
        log.debug("%s is not a readable ISO 9660 image", path, exc_info=True)
        return None
    try:
        if iso.pvd.volume_identifier.decode(errors="replace").strip() != LABEL:
            return None
        out = {}
        for fname in FILES:
            data = io.BytesIO()
            with contextlib.suppress(pycdlib.pycdlibexception.PyCdlibException):
                iso.get_file_from_iso_fp(data, rr_path=f"/{fname}")
                out[fname] = data.getvalue()
        return dict(sorted(out.items()))
    except Exception:  # pylint: disable=broad-except
        log.debug("cannot read the files of %s", path, exc_info=True)
        return None
    finally:
        with contextlib.suppress(Exception):
            iso.close()


def write(path: str, files: dict[str, bytes]) -> None:
    """Write the seed ISO ``files`` to ``path`` (a new file renamed over the old one)."""
    import pycdlib  # pylint: disable=import-outside-toplevel

    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".seed-", suffix=".iso", dir=directory)
        os.close(fd)
    except OSError as exc:
        raise KvmError(f"cannot write the cloud-init seed {path}: {exc.strerror}") from None
    iso = pycdlib.PyCdlib()
    try:
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
        for fname, data in files.items():
            iso.add_fp(
                io.BytesIO(data), len(data), FILES[fname], rr_name=fname, joliet_path=f"/{fname}"
            )
        iso.write(tmp)
        # user data holds passwords and keys: root only; libvirt hands the file to QEMU when
        # the VM starts (dynamic_ownership, on by default, chowns it to libvirt-qemu)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except OSError as exc:
        raise KvmError(f"cannot write the cloud-init seed {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(Exception):
            iso.close()
        with contextlib.suppress(OSError):
            os.remove(tmp)


def ensure(name: str, spec: dict[str, Any]) -> bool:
    """Write the VM's seed when its files differ from the declared ones; True when written."""
    path, files = seed_path(name), render(name, spec)
    if read(path) == files:
        return False
    write(path, files)
    return True


def remove(name: str) -> bool:
    """Delete the VM's seed ISO; True when there was one."""
    try:
        os.remove(seed_path(name))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise KvmError(
            f"cannot remove the cloud-init seed {seed_path(name)}: {exc.strerror}"
        ) from None
    return True


def summary(files: Optional[dict[str, bytes]]) -> Optional[dict[str, str]]:
    """What state output shows of a seed: per file its SHA-256 prefix and size, never its content
    (user data holds passwords and keys); the instance-id, which is no secret."""
    if files is None:
        return None
    out = {}
    for fname, data in files.items():
        out[fname] = f"sha256:{hashlib.sha256(data).hexdigest()[:12]} ({len(data)} bytes)"
    with contextlib.suppress(Exception):
        meta = yaml.safe_load(files.get("meta-data", b"")) or {}
        if isinstance(meta, dict) and meta.get("instance-id"):
            out["instance-id"] = str(meta["instance-id"])
    return out
