"""A VM's firmware (``firmware: bios|uefi``) and graphics console (``graphics``).

**Firmware.** ``uefi`` asks libvirt to pick the firmware itself
(``<os firmware='efi'>``, libvirt's firmware autoselection from the QEMU firmware
descriptors in :data:`FIRMWARE_DIRS`, which Debian's ``ovmf`` package installs),
with Secure Boot and its pre-enrolled keys off, so any bootloader or kernel
starts. libvirt gives each UEFI VM its own NVRAM (its UEFI variables) in
``/var/lib/libvirt/qemu/nvram/<vm>_VARS.fd``, copied from the firmware's
template at the first start and deleted when the VM is undefined. ``bios`` is
SeaBIOS, QEMU's default. A VM defined with an explicit pflash ``<loader>`` counts
as ``uefi`` and is left as it is.

**Graphics.** ``graphics: none`` removes every graphics device;
``{type: vnc|spice, password, listen, port}`` declares one (``listen``
127.0.0.1 and ``port: auto`` by default). The password goes into the definition
(``passwd=``) and nowhere else: libvirt's own XML hides it unless asked with
``VIR_DOMAIN_XML_SECURE`` (which is how drift is found), and state output,
``vm_show`` and ``vm_list`` show ``<hidden>`` (set) or ``None`` (no password).
Undeclared, ``firmware`` and ``graphics`` are left as they are.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from typing import Any, Iterable, Optional

from lxml import etree

from salt_kvm.errors import InvalidInput

#: where QEMU firmware descriptors live (as libvirt reads them; /etc overrides /usr/share)
FIRMWARE_DIRS = ("/etc/qemu/firmware", "/usr/share/qemu/firmware")
HIDDEN = "<hidden>"


# --- firmware ----------------------------------------------------------------------------


def uefi_available(dirs: Optional[Iterable[str]] = None) -> bool:
    """Whether a QEMU firmware descriptor offers UEFI for x86_64 (Debian: package ``ovmf``)."""
    for directory in FIRMWARE_DIRS if dirs is None else dirs:
        for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
            try:
                with open(path, encoding="utf-8") as fh:
                    desc = json.load(fh)
            except (OSError, ValueError):
                continue
            if not isinstance(desc, dict) or "uefi" not in (desc.get("interface-types") or []):
                continue
            if any(
                isinstance(t, dict) and t.get("architecture") == "x86_64"
                for t in desc.get("targets") or []
            ):
                return True
    return False


def firmware_of(root: Any) -> str:
    """``uefi`` or ``bios``: what a definition boots with."""
    os_el = root.find("os")
    if os_el is None:
        return "bios"
    loader = os_el.find("loader")
    if os_el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash"):
        return "uefi"
    return "bios"


def check_firmware(name: str, firmware: Optional[str]) -> None:
    """Refuse ``uefi`` where no UEFI firmware is installed."""
    if firmware == "uefi" and not uefi_available():
        raise InvalidInput(
            f"{name}:firmware",
            "no UEFI firmware for x86_64 on this host (install Debian's ovmf package)",
        )


def set_firmware(root: Any, name: str, firmware: Optional[str]) -> None:
    """Edit ``root`` to boot with ``firmware`` (``None``: leave it as it is)."""
    if firmware is None or firmware_of(root) == firmware:
        return
    os_el = root.find("os")
    if firmware == "uefi":
        check_firmware(name, firmware)
        os_el.set("firmware", "efi")
        for node in os_el.findall("firmware"):
            os_el.remove(node)
        fw = etree.Element("firmware")
        etree.SubElement(fw, "feature", enabled="no", name="enrolled-keys")
        etree.SubElement(fw, "feature", enabled="no", name="secure-boot")
        os_el.find("type").addnext(fw)
        return
    os_el.attrib.pop("firmware", None)
    for tag in ("firmware", "loader", "nvram"):
        for node in os_el.findall(tag):
            os_el.remove(node)


# --- graphics ----------------------------------------------------------------------------


def _token(password):
    """What drift detection compares a password by; only ever compared, never shown or logged."""
    return None if password is None else "sha256:" + hashlib.sha256(password.encode()).hexdigest()


def _model(el):
    listen = el.get("listen")
    if listen is None and el.find("listen") is not None:
        listen = el.find("listen").get("address")
    port = el.get("port")
    port = "auto" if el.get("autoport") == "yes" or port in (None, "-1") else int(port)
    return {
        "type": el.get("type"),
        "listen": listen,
        "port": port,
        "password": _token(el.get("passwd")),
    }


def graphics_of(root: Any) -> list[dict[str, Any]]:
    """The graphics devices of a definition as comparable values (passwords as tokens)."""
    return [_model(el) for el in root.findall("devices/graphics")]


def _wanted(graphics):
    if graphics["type"] == "none":
        return []
    return [
        {
            "type": graphics["type"],
            "listen": graphics.get("listen", "127.0.0.1"),
            "port": graphics.get("port", "auto"),
            "password": _token(graphics.get("password")),
        }
    ]


def set_graphics(root: Any, graphics: Optional[dict[str, Any]]) -> None:
    """Edit ``root`` to hold the declared graphics device (``None``: leave them as they are).
    Devices that already match are kept as libvirt wrote them."""
    if graphics is None:
        return
    devices = root.find("devices")
    if graphics_of(root) == _wanted(graphics):
        return
    for node in devices.findall("graphics"):
        devices.remove(node)
    if graphics["type"] == "none":
        return
    listen, port = graphics.get("listen", "127.0.0.1"), graphics.get("port", "auto")
    attrs = {"type": graphics["type"]}
    if port == "auto":
        attrs.update(port="-1", autoport="yes")
    else:
        attrs.update(port=str(port), autoport="no")
    attrs["listen"] = listen
    if graphics.get("password") is not None:
        attrs["passwd"] = graphics["password"]
    el = etree.SubElement(devices, "graphics", **attrs)
    etree.SubElement(el, "listen", type="address", address=listen)


def shown(models: Optional[list[dict[str, Any]]]) -> Optional[list[dict[str, Any]]]:
    """Graphics models as output shows them: the password ``<hidden>`` when set."""
    if models is None:
        return None
    return [dict(m, password=HIDDEN if m.get("password") else None) for m in models]


def shown_change(
    old: Optional[list[dict[str, Any]]], new: Optional[list[dict[str, Any]]]
) -> dict[str, Any]:
    """``{old, new}`` for state output; a changed password shows as ``<hidden> (changed)``."""
    old_s, new_s = shown(old), shown(new)
    if old_s == new_s and new_s is not None:  # only a password differs
        new_s = [dict(m, password=f"{HIDDEN} (changed)" if m["password"] else None) for m in new_s]
    return {"old": old_s, "new": new_s}


def shown_spec(graphics: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """A declared ``graphics`` value as output shows it."""
    if graphics is None:
        return None
    return (
        dict(graphics, password=HIDDEN) if graphics.get("password") is not None else dict(graphics)
    )
