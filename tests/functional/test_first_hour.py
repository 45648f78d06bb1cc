"""An operator's first hour (issue 20), through the real ``salt-call`` exactly
as the docs show the commands: no extra arguments, a pillar file, and the text
a person reads (Salt's default outputs), not only the JSON.

- ``kvm.validate_pillar`` and ``kvm.render_formula`` without arguments read
  the minion's real pillar (Salt 3008's ``pillar.get`` masks values);
- a bad pillar: ``validate_pillar`` prints every error on its own line and no
  usage text; ``state.apply kvm`` fails as one state listing them;
- no ``kvm`` pillar: ``state.apply kvm`` says so in one state and exits 0;
- state ``changes`` show sizes for people, ``--out=json`` keeps the bytes;
  ``pool_absent test=True`` says the storage is kept;
- execution functions say ``force=True``;
- ``*_dumpxml`` and the per-call ``connection=``.
"""

import os

import pytest

from tests.conftest import REPO
from tests.support import sandbox
from tests.support.saltcall import SaltCall, repo_file_root, state_results


@pytest.fixture
def made():
    names = []
    try:
        yield names
    finally:
        sandbox.remove_named(names)


def salt_call(tmp_path, pillar):
    """``salt-call --local`` with the formula served as gitfs would and this checkout's modules."""
    roots = repo_file_root(tmp_path / "roots")
    return SaltCall(
        tmp_path / "salt", file_roots=[roots], pillar=pillar, env={"PYTHONPATH": str(REPO)}
    )


def text_of(call, *args):
    """``(exit code, stdout, stderr)`` with Salt's default output (what a person reads)."""
    return call.run(*args, out=None)


def test_validate_pillar_and_render_formula_without_arguments_read_the_real_pillar(tmp_path, made):
    pool = sandbox.uid("fh-")
    made.append(pool)
    target = os.path.join(sandbox.FILES_ROOT, pool)
    call = salt_call(
        tmp_path,
        {
            "pools": {
                pool: {"type": "dir", "target": target, "volumes": {"a.qcow2": {"size": "1G"}}}
            }
        },
    )

    code, text, err = text_of(call, "kvm.validate_pillar")
    assert code == 0, (text, err)
    assert "*****" not in text, text
    lines = [line.strip() for line in text.splitlines()]
    # Salt's nested output: each key, then its value on the next line
    assert lines[lines.index("type:") + 1] == "dir", text
    assert (
        lines[lines.index("target:") + 1] == target
        and lines[lines.index("size:") + 1] == "1073741824"
    ), text

    code, data, err = call.run("kvm.render_formula")
    assert code == 0, (data, err)
    assert list(data) == [f"kvm-pool-{pool}", f"kvm-volume-{pool}-a.qcow2"]
    assert {"type": "dir"} in data[f"kvm-pool-{pool}"]["kvm.pool_present"]


BAD = {
    "bridges": {"kvt-br0": {"stpp": True}},
    "pools": {
        "images": {
            "type": "dri",
            "target": "/srv/kvt-images",
            "volumes": {"a.qcow2": {"size": "20X"}},
        }
    },
}
ERRORS = [
    "kvm:bridges:kvt-br0:stpp: unknown key 'stpp' (did you mean 'stp'?)",
    "kvm:pools:images:type: 'dri' is not one of dir, fs, netfs, logical, disk, iscsi, "
    "iscsi-direct, rbd, gluster (did you mean 'dir'?)",
    "kvm:pools:images:volumes:a.qcow2:size: '20X' is not a size (a number of bytes, or with a "
    "unit: K, M, G, T (or KiB, MiB, GiB, TiB) are powers of 1024, KB, MB, GB, TB powers of 1000, "
    "as in virsh)",
]


def test_a_bad_pillar_prints_one_error_per_line_without_usage_text(tmp_path):
    call = salt_call(tmp_path, BAD)
    code, text, err = text_of(call, "kvm.validate_pillar")
    assert code == 1
    assert (
        "Usage" not in err
        and "Passed invalid arguments" not in err
        and "CLI Example" not in err + text
    ), err
    assert (
        err.strip().splitlines() == ["Error running 'kvm.validate_pillar': 3 errors:"] + ERRORS
    ), err


def test_a_bad_pillar_is_one_failed_state_listing_every_error(tmp_path):
    call = salt_call(tmp_path, BAD)
    code, data, err = call.run("state.apply", "kvm")
    assert code != 0
    results = state_results(data)
    assert list(results) == ["kvm-pillar"], data
    ret = results["kvm-pillar"]
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].splitlines() == ["3 errors:"] + ERRORS

    code, text, err = text_of(call, "state.apply", "kvm")
    assert "Failed:    1" in text and "Succeeded: 0" in text, text
    # each error on its own line in the highstate text
    for error in ERRORS:
        assert any(line.strip() == error for line in text.splitlines()), (error, text)
    # a part applied alone: the same, one state
    code, data, err = call.run("state.apply", "kvm.storage")
    assert code != 0 and list(state_results(data)) == ["kvm-pillar-storage"]


def test_no_kvm_pillar_is_one_state_that_says_so(tmp_path):
    call = salt_call(tmp_path, {})
    (call.pillar_dir / "kvm.sls").write_text("something_else: 1\n")
    code, data, err = call.run("state.apply", "kvm")
    assert code == 0, (data, err)
    results = state_results(data)
    assert list(results) == ["kvm-pillar"] and results["kvm-pillar"]["result"] is True
    comment = results["kvm-pillar"]["comment"]
    assert (
        comment.startswith("this minion has no kvm pillar")
        and "pillar.example" in comment
        and "pillar.item kvm" in comment
    )
    # validate_pillar: nothing to validate is valid
    assert call.run("kvm.validate_pillar")[:2] == (0, {})


def test_changes_show_sizes_for_people_and_json_keeps_bytes(tmp_path, made):
    pool = sandbox.uid("fh-")
    made.append(pool)
    target = os.path.join(sandbox.FILES_ROOT, pool)
    pillar = {
        "pools": {pool: {"type": "dir", "target": target, "volumes": {"a.qcow2": {"size": "1M"}}}}
    }
    call = salt_call(tmp_path, pillar)
    code, data, err = call.run("state.apply", "kvm")
    assert code == 0, (data, err)
    created = state_results(data)[f"kvm-volume-{pool}-a.qcow2"]
    assert created["comment"].endswith("was created"), created

    pillar["pools"][pool]["volumes"]["a.qcow2"]["size"] = "2M"
    call.set_pillar(pillar)
    code, data, err = call.run("state.apply", "kvm", "test=True")
    ret = state_results(data)[f"kvm-volume-{pool}-a.qcow2"]
    assert ret["result"] is None and ret["changes"]["size"] == {"old": "1 MiB", "new": "2 MiB"}, ret
    assert ret["bytes"]["size"] == {"old": 1024**2, "new": 2 * 1024**2}
    code, text, err = text_of(call, "state.apply", "kvm", "test=True")
    assert "2 MiB" in text and "2097152" not in text, text

    # pool_absent without purge: the storage is kept, and its capacity is not listed as removed
    call.set_pillar({"pools": {pool: {"absent": True}}})
    code, data, err = call.run("state.apply", "kvm", "test=True")
    ret = state_results(data)[f"kvm-pool-{pool}"]
    assert ret["result"] is None, ret
    assert (
        ret["comment"] == f"pool '{pool}' would be undefined; its volumes and storage are kept "
        "(purge: True deletes them)"
    )
    assert not {"capacity", "allocation", "available"} & set(ret["changes"]["removed"]["old"]), ret[
        "changes"
    ]


def test_exec_functions_say_force_equals_true(tmp_path, conn, tiny_vm, dir_pool):
    name, path = dir_pool
    disk = os.path.join(path, "busy.qcow2")
    sandbox.qemu_img("create", "-q", "-f", "qcow2", disk, "1M")
    dom, _ = tiny_vm(disk=disk)
    conn.storagePoolLookupByName(name).refresh(0)
    call = salt_call(tmp_path, {})
    code, text, err = text_of(call, "kvm.volume_delete", name, "busy.qcow2")
    assert code == 1 and "force=True" in err and "force: True" not in err, err
    assert f"used by VM {dom.name()}" in err and os.path.exists(disk)


def test_dumpxml_and_a_per_call_connection(tmp_path, conn, dir_pool, made):
    name, path = dir_pool
    sandbox.qemu_img("create", "-q", "-f", "raw", os.path.join(path, "a.img"), "1M")
    conn.storagePoolLookupByName(name).refresh(0)
    net = sandbox.uid("fh-")
    made.append(net)
    conn.networkDefineXML(f"<network><name>{net}</name><bridge name='{net}'/></network>")
    call = salt_call(tmp_path, {})

    code, xml, err = call.run("kvm.pool_dumpxml", name)
    assert code == 0 and xml.startswith("<pool type='dir'>") and f"<path>{path}</path>" in xml, (
        xml,
        err,
    )
    code, xml, err = call.run("kvm.volume_dumpxml", name, "a.img")
    assert code == 0 and xml.startswith("<volume type='file'>") and "<name>a.img</name>" in xml, (
        xml,
        err,
    )
    code, xml, err = call.run("kvm.network_dumpxml", net, "inactive=True")
    assert code == 0 and xml.startswith("<network>") and f"<name>{net}</name>" in xml, (xml, err)
    code, xml, err = call.run("kvm.pool_dumpxml", "kvt-no-such-pool")
    assert code == 1 and "pool 'kvt-no-such-pool' does not exist on qemu:///system" in err

    # connection=: libvirt's own test driver for this call only, the configured one otherwise
    code, pools, err = call.run("kvm.pool_list", "connection=test:///default")
    assert code == 0 and list(pools) == ["default-pool"], (pools, err)
    code, xml, err = call.run("kvm.pool_dumpxml", "default-pool", "connection=test:///default")
    assert code == 0 and "<name>default-pool</name>" in xml
    code, pools, err = call.run("kvm.pool_list")
    assert code == 0 and name in pools and "default-pool" not in pools
    code, text, err = text_of(call, "kvm.pool_list", "connection=nonsense")
    assert code == 1 and "connection: 'nonsense' is not a libvirt URI" in err, err
