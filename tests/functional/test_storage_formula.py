"""The ``kvm.storage`` formula's states, rendered from pillar, run through the real state module:
pool first, backing volumes before the volumes on them; test mode predicts the real run; a
second run changes nothing."""

import contextlib
import hashlib
import os
import shutil

import pytest

from tests.support import sandbox


@pytest.fixture
def pillar(conn):
    name = sandbox.uid("pool-")
    base = sandbox.files_dir(name)
    target = os.path.join(base, "images")
    src = os.path.join(base, "src.qcow2")
    sandbox.qemu_img("create", "-q", "-f", "qcow2", src, "8M")
    with open(src, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    tree = {
        "pools": {
            name: {
                "type": "dir",
                "target": target,
                "autostart": True,
                "volumes": {
                    # declared before its backing volume on purpose: the formula orders them
                    "web01.qcow2": {"size": "32M", "format": "qcow2", "backing": "base.qcow2"},
                    "base.qcow2": {"size": "16M", "format": "qcow2"},
                    "imported.qcow2": {"source": src, "sha256": digest},
                },
            }
        }
    }
    try:
        yield name, target, tree
    finally:
        import libvirt  # pylint: disable=import-outside-toplevel

        with contextlib.suppress(libvirt.libvirtError):
            pool = conn.storagePoolLookupByName(name)
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        shutil.rmtree(base, ignore_errors=True)


def _run(kvm, kvm_state, tree, test):
    results = []
    for sid, body in kvm.render_formula("storage", tree).items():
        ((fun, args),) = body.items()
        kwargs = {}
        for item in args:
            kwargs.update(item)
        kwargs.pop("require", None)
        name = kwargs.pop("name")
        ret = getattr(kvm_state, fun.split(".", 1)[1])(name, test=test, **kwargs)
        results.append((sid, ret["result"], ret["changes"], ret["comment"]))
    return results


def test_storage_formula_applies_in_order_and_is_idempotent(kvm, kvm_state, pillar):
    name, target, tree = pillar
    predicted = _run(kvm, kvm_state, tree, test=True)
    assert [sid for sid, *_ in predicted] == [
        f"kvm-pool-{name}",
        f"kvm-volume-{name}-base.qcow2",
        f"kvm-volume-{name}-web01.qcow2",
        f"kvm-volume-{name}-imported.qcow2",
    ]
    # the pool does not exist yet: test mode predicts it and every volume, and makes nothing
    assert all(result is None for _, result, _, _ in predicted), predicted
    # sizes in changes are for people (the bytes are in the return's "bytes")
    assert predicted[2][2] == {
        "volume": {
            "old": None,
            "new": {"size": "32 MiB", "format": "qcow2", "backing": "base.qcow2"},
        }
    }
    assert "does not exist" in predicted[2][3] and not os.path.exists(target)

    applied = _run(kvm, kvm_state, tree, test=False)
    assert all(result is True for _, result, _, _ in applied), applied
    assert [c for _, _, c, _ in applied] == [c for _, _, c, _ in predicted]
    assert os.path.exists(os.path.join(target, "web01.qcow2"))
    assert kvm.volume_show(name, "web01.qcow2")["backing"] == os.path.join(target, "base.qcow2")

    # now everything exists: test mode and a real run both report no changes
    for test in (True, False):
        again = _run(kvm, kvm_state, tree, test=test)
        assert all(result is True and changes == {} for _, result, changes, _ in again), again

    # grow one volume: test mode predicts exactly the change the real run makes
    tree["pools"][name]["volumes"]["web01.qcow2"]["size"] = "48M"
    predicted = _run(kvm, kvm_state, tree, test=True)
    applied = _run(kvm, kvm_state, tree, test=False)
    assert [c for _, _, c, _ in predicted] == [c for _, _, c, _ in applied]
    assert applied[2][2] == {"size": {"old": "32 MiB", "new": "48 MiB"}}
