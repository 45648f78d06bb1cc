"""The floors: plain scripts that do only the necessary work, one process each.

Run by ``bench/run.py`` under ``/usr/bin/time`` so their cost is measured the
same way as ``salt-call``'s (whole process: interpreter start, imports, work)::

    floors.py libvirt-read SPEC      list pools and volumes (and the VMs' snapshots, and the
                                     declared VMs' definitions, live and persistent), parse
                                     XML, compare
    floors.py libvirt-create SPEC    define/build/start the pools, create the volumes (and one
                                     snapshot per VM; define and start the declared VMs)
    floors.py pyroute2-read SPEC     one netlink dump of the links, compare bridges and their ports
    floors.py pyroute2-create SPEC   create the bridges, enslave the ports, set them up

SPEC is the JSON file ``run.py`` writes: ``{"pools": [{"name", "target",
"volumes": [name, ...], "size": bytes}], "bridges": [{"name", "ports": [...]}],
"vms": [name, ...], "decl_vms": [{"name", "path"}, ...], "vm_type"}``. The pyroute2 modes
run inside the bench's netns (``ip netns exec``). Each prints one JSON line: objects seen,
differences found.
"""

import json
import sys


def libvirt_read(spec):
    import libvirt
    from lxml import etree

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open("qemu:///system")
    wanted = {p["name"]: p for p in spec.get("pools", [])}
    objects = diffs = 0
    for pool in conn.listAllStoragePools(0):
        want = wanted.get(pool.name())
        if want is None:
            continue
        root = etree.fromstring(pool.XMLDesc(0))
        objects += 1
        if (
            root.get("type") != "dir"
            or root.findtext("target/path") != want["target"]
            or not pool.isActive()
            or not pool.autostart()
        ):
            diffs += 1
        have = {}
        for vol in pool.listAllVolumes(0):
            vroot = etree.fromstring(vol.XMLDesc(0))
            have[vroot.findtext("name")] = (
                int(vroot.findtext("capacity")),
                vroot.find("target/format").get("type"),
            )
            objects += 1
        for vname in want["volumes"]:
            if have.get(vname) != (want["size"], "qcow2"):
                diffs += 1
    vms = set(spec.get("vms", []))
    if vms:
        for dom in conn.listAllDomains(0):
            if dom.name() not in vms:
                continue
            objects += 1
            etree.fromstring(dom.XMLDesc(0))
            snaps = dom.listAllSnapshots(0)
            for snap in snaps:
                etree.fromstring(snap.getXMLDesc(0))
                objects += 1
            if not snaps:
                diffs += 1
    declared = {vm["name"]: vm for vm in spec.get("decl_vms", [])}
    if declared:
        for dom in conn.listAllDomains(0):
            want = declared.get(dom.name())
            if want is None:
                continue
            objects += 1
            root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            live = etree.fromstring(dom.XMLDesc(0)) if dom.isActive() else None
            disks = [d.get("file") for d in root.iterfind("devices/disk/source")]
            if (
                root.findtext("vcpu") != "1"
                or int(root.findtext("memory")) != 65536
                or disks != [want["path"]]
                or live is None
                or live.findtext("vcpu") != "1"
            ):
                diffs += 1
    conn.close()
    return {"objects": objects, "diffs": diffs}


def _domain_xml(vm, dtype):
    """What vm_present defines for a declared VM (64 MiB, one vCPU, its volume as vda)."""
    return (
        f"<domain type='{dtype}'><name>{vm['name']}</name><memory unit='KiB'>65536</memory>"
        "<currentMemory unit='KiB'>65536</currentMemory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><features><acpi/></features>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source "
        f"file='{vm['path']}'/>"
        "<target dev='vda' bus='virtio'/></disk><memballoon model='virtio'/></devices></domain>"
    )


def libvirt_create(spec):
    import libvirt
    from lxml import etree

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open("qemu:///system")
    objects = 0
    for want in spec.get("pools", []):
        pool_el = etree.Element("pool", type="dir")
        etree.SubElement(pool_el, "name").text = want["name"]
        etree.SubElement(etree.SubElement(pool_el, "target"), "path").text = want["target"]
        pool = conn.storagePoolDefineXML(etree.tostring(pool_el, encoding="unicode"), 0)
        pool.build(0)
        pool.create(0)
        pool.setAutostart(1)
        objects += 1
        for vname in want["volumes"]:
            vol = etree.Element("volume")
            etree.SubElement(vol, "name").text = vname
            etree.SubElement(vol, "capacity", unit="bytes").text = str(want["size"])
            etree.SubElement(etree.SubElement(vol, "target"), "format", type="qcow2")
            pool.createXML(etree.tostring(vol, encoding="unicode"), 0)
            objects += 1
    for name in spec.get("vms", []):
        dom = conn.lookupByName(name)
        dom.snapshotCreateXML("<domainsnapshot><name>floor-0</name></domainsnapshot>", 0)
        objects += 1
    for vm in spec.get("decl_vms", []):
        conn.defineXML(_domain_xml(vm, spec.get("vm_type", "kvm"))).create()
        objects += 1
    conn.close()
    return {"objects": objects, "diffs": 0}


def _links(ipr):
    links = ipr.get_links()
    by_index = {link["index"]: link for link in links}
    out = {}
    for link in links:
        info = link.get_attr("IFLA_LINKINFO")
        master = link.get_attr("IFLA_MASTER")
        out[link.get_attr("IFLA_IFNAME")] = {
            "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
            "master": by_index[master].get_attr("IFLA_IFNAME") if master in by_index else None,
            "up": bool(link["flags"] & 1),
        }
    return out


def pyroute2_read(spec):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = _links(ipr)  # one dump
    objects = diffs = 0
    for br in spec.get("bridges", []):
        have = links.get(br["name"])
        objects += 1
        if not have or have["kind"] != "bridge" or not have["up"]:
            diffs += 1
        for port in br["ports"]:
            objects += 1
            if links.get(port, {}).get("master") != br["name"]:
                diffs += 1
    return {"objects": objects, "diffs": diffs}


def pyroute2_create(spec):
    from pyroute2 import IPRoute

    objects = 0
    with IPRoute() as ipr:
        for br in spec.get("bridges", []):
            ipr.link("add", ifname=br["name"], kind="bridge", br_stp_state=0, br_forward_delay=0)
            idx = ipr.link_lookup(ifname=br["name"])[0]
            for port in br["ports"]:
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=idx, state="up")
                objects += 1
            ipr.link("set", index=idx, state="up")
            objects += 1
    return {"objects": objects, "diffs": 0}


MODES = {
    "libvirt-read": libvirt_read,
    "libvirt-create": libvirt_create,
    "pyroute2-read": pyroute2_read,
    "pyroute2-create": pyroute2_create,
}


def main(argv):
    mode, spec_file = argv[1], argv[2]
    with open(spec_file, encoding="utf-8") as fh:
        spec = json.load(fh)
    print(json.dumps(MODES[mode](spec)))


if __name__ == "__main__":
    main(sys.argv)
