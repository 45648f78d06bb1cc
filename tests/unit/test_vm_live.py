"""What a running VM takes live and what waits for a restart (salt_kvm.vm_live.plan),
on XML alone."""

from salt_kvm import vm_live
from salt_kvm.xml.base import parse

LIVE = """\
<domain type='qemu'><name>v</name><memory unit='KiB'>131072</memory>\
<currentMemory unit='KiB'>131072</currentMemory>
<vcpu placement='static' current='1'>2</vcpu>\
<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
<devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/p/a.qcow2'/>\
<target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/p/b.qcow2'/>\
<target dev='vdb' bus='virtio'/></disk>
<interface type='network'><mac address='52:54:00:00:00:01'/>\
<source network='default' portid='x' bridge='virbr0'/><model type='virtio'/></interface>
<interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/>\
<model type='virtio'/></interface>
<memballoon model='virtio'/></devices></domain>"""


def _want(
    memory=65536, maximum=131072, vcpu="<vcpu current='1'>2</vcpu>", disks=("a", "b"), nics=None
):
    nics = (
        nics
        if nics is not None
        else [
            "<interface type='network'><mac address='52:54:00:00:00:01'/><source "
            "network='default'/><model type='virtio'/></interface>",
            "<interface type='bridge'><mac address='52:54:00:00:00:02'/><source "
            "bridge='br0'/><model type='virtio'/></interface>",
        ]
    )
    disk_xml = "".join(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source "
        f"file='/p/{d}.qcow2'/><target dev='vd{chr(97 + i)}' bus='virtio'/></disk>"
        for i, d in enumerate(disks)
    )
    return parse(f"""\
<domain type='qemu'><name>v</name><memory unit='KiB'>{maximum}</memory>\
<currentMemory unit='KiB'>{memory}</currentMemory>
{vcpu}<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>\
<devices>{disk_xml}{"".join(nics)}<memballoon model='virtio'/></devices></domain>""")


def _texts(ops):
    return [op.text for op in ops]


def test_a_running_network_nic_is_not_a_change():
    ops, pending = vm_live.plan(
        parse(LIVE),
        _want(),
        {"disks": [{"pool": "p", "volume": "a.qcow2"}, {"pool": "p", "volume": "b.qcow2"}]},
        {"nics", "disks"},
    )
    assert ops == [] and pending == []


def test_live_and_pending_parts():
    nics = [
        "<interface type='network'><mac address='52:54:00:00:00:01'/><source "
        "network='other'/><model type='virtio'/><link state='down'/></interface>",
        "<interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/><model "
        "type='e1000'/></interface>",
        "<interface type='bridge'><source bridge='br1'/><model type='virtio'/></interface>",
    ]
    want = _want(memory=98304, vcpu="<vcpu>2</vcpu>", disks=("a", "c", "b"), nics=nics)
    spec = {"disks": [{"pool": "p", "volume": v} for v in ("a.qcow2", "c.qcow2", "b.qcow2")]}
    ops, pending = vm_live.plan(
        parse(LIVE), want, spec, {"memory", "vcpus", "nics", "disks"}, memory_changed=True
    )
    assert _texts(ops) == [
        "NIC 52:54:00:00:00:01 default -> other, link down",
        "attach NIC (new) on bridge br1",
        "memory 96 MiB",
        "vcpus 1 -> 2",
    ]
    assert pending == [
        "NIC 52:54:00:00:00:02 model virtio -> e1000",
        "disk p/c.qcow2 as vdb (the running VM has /p/b.qcow2 there)",
        "disk p/b.qcow2 as vdc (now vdb)",
    ]
    # a new NIC and a removed disk
    ops, pending = vm_live.plan(
        parse(LIVE),
        _want(disks=("a",), nics=[nics[2]]),
        {"disks": [{"pool": "p", "volume": "a.qcow2"}]},
        {"nics", "disks"},
    )
    assert (
        _texts(ops)
        == [
            "detach NIC 52:54:00:00:00:01 on network default",
            "detach NIC 52:54:00:00:00:02 on bridge br0",
            "detach disk vdb (/p/b.qcow2)",
            "attach NIC (new) on bridge br1",
        ]
        and pending == []
    )


def test_over_the_running_maximum_waits_for_a_restart():
    want = _want(memory=262144, maximum=262144, vcpu="<vcpu current='4'>4</vcpu>")
    ops, pending = vm_live.plan(
        parse(LIVE), want, {}, {"memory", "max_memory", "vcpus", "max_vcpus"}, memory_changed=True
    )
    assert ops == []
    assert pending == [
        "max_memory 128 MiB -> 256 MiB",
        "memory 256 MiB (above the running maximum 128 MiB)",
        "max_vcpus 2 -> 4",
        "vcpus 4 (above the running maximum 2)",
    ]
    assert vm_live.pending_text(pending).startswith("pending: max_memory")


def test_without_a_balloon_memory_waits():
    live = parse(LIVE.replace("<memballoon model='virtio'/>", "<memballoon model='none'/>"))
    ops, pending = vm_live.plan(live, _want(memory=98304), {}, {"memory"}, memory_changed=True)
    assert ops == [] and pending == ["memory 96 MiB (the VM has no balloon device)"]
