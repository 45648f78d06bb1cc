"""Make a bridge survive a reboot: the host's own network configuration.

Three renderers turn one bridge description (what :class:`salt_kvm.bridge.BridgeResource`
applied: declared keys plus the addresses and routes that moved from the
uplink) into whole files:

* :mod:`~salt_kvm.persist.ifupdown` -- ``/etc/network/interfaces.d/salt-kvm-<bridge>``
  (and the uplink's own stanza in ``/etc/network/interfaces`` commented out);
* :mod:`~salt_kvm.persist.networkd` -- ``/etc/systemd/network/10-salt-kvm-*.{netdev,network}``;
* :mod:`~salt_kvm.persist.networkmanager` -- keyfiles in
  ``/etc/NetworkManager/system-connections/``.

``root`` prefixes every path (tests render into a temporary directory).
:func:`detect` picks the backend the host runs (``persist: auto``).
Renderers are pure functions of the description and the current file
contents, so ``test=True`` predicts exactly which files change.
"""

import os
from typing import Optional

from salt_kvm.errors import KvmError

BACKENDS = ("ifupdown", "networkd", "networkmanager")
HEADER = "Managed by salt-kvm (kvm.bridge_present {name}); local changes are overwritten."


def _path(root, path):
    return os.path.join(root or "/", path.lstrip("/"))


def detect(root: str = "/") -> str:
    """The backend that configures this host's network: NetworkManager, networkd or ifupdown."""
    exists = lambda p: os.path.exists(_path(root, p))  # noqa: E731
    if exists("/run/NetworkManager") and exists("/etc/NetworkManager"):
        return "networkmanager"
    if exists("/run/systemd/netif/links") or (
        exists("/etc/systemd/network")
        and _has_files(_path(root, "/etc/systemd/network"), ".network")
    ):
        return "networkd"
    if exists("/etc/network/interfaces"):
        return "ifupdown"
    raise KvmError(
        "persist: auto found no network configuration system (no running NetworkManager, "
        "no systemd-networkd, no /etc/network/interfaces); set persist to one of "
        + ", ".join(BACKENDS)
        + " or none"
    )


def _has_files(directory, suffix):
    try:
        return any(n.endswith(suffix) for n in os.listdir(directory))
    except OSError:
        return False


def _module(backend):
    if backend == "ifupdown":
        from salt_kvm.persist import ifupdown as mod  # pylint: disable=import-outside-toplevel
    elif backend == "networkd":
        from salt_kvm.persist import networkd as mod  # pylint: disable=import-outside-toplevel
    elif backend == "networkmanager":
        from salt_kvm.persist import networkmanager as mod  # pylint: disable=import-outside-toplevel
    else:
        raise KvmError(f"persist: unknown backend {backend!r}")
    return mod


def read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KvmError(f"persist: cannot read {path}: {exc.strerror}") from None


def render(backend: str, spec: dict, *, root: str = "/") -> dict[str, str]:
    """``{absolute path: content}`` for bridge ``spec`` (content ``None``: remove the file)."""
    mod = _module(backend)
    files = mod.render(spec, lambda p: read(_path(root, p)))
    return {_path(root, path): content for path, content in files.items()}


def pending(files: dict[str, str]) -> dict[str, str]:
    """``{path: "missing" | "differs" | "to remove"}`` for files not yet as rendered."""
    out = {}
    for path, content in sorted(files.items()):
        have = read(path)
        if content is None:
            if have is not None:
                out[path] = "to remove"
        elif have is None:
            out[path] = "missing"
        elif have != content:
            out[path] = "differs"
    return out


def write(files: dict[str, str]) -> dict[str, Optional[str]]:
    """Write ``files`` (atomically, one by one); return the backup for :func:`restore`."""
    backup = {}
    for path, content in sorted(files.items()):
        old = read(path)
        if old == content:
            continue
        backup[path] = old
        try:
            if content is None:
                os.unlink(path)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            mode = 0o600 if "NetworkManager" in path else 0o644
            tmp = f"{path}.salt-kvm.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            restore(backup)
            raise KvmError(f"persist: cannot write {path}: {exc.strerror}") from None
    return backup


def restore(backup: dict[str, Optional[str]]) -> None:
    """Put files back as :func:`write` found them."""
    for path, content in backup.items():
        if content is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(content)


def remove(backend: str, name: str, *, root: str = "/") -> list[str]:
    """Remove the files salt-kvm wrote for bridge ``name``; return their paths."""
    mod = _module(backend)
    removed = []
    for path in mod.owned_files(name, lambda d: _listdir(_path(root, d))):
        full = _path(root, path)
        if os.path.exists(full):
            os.unlink(full)
            removed.append(full)
    return removed


def _listdir(directory):
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []
