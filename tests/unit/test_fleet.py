"""salt_kvm.fleet without a daemon or a master: the runner's gathering,
batching and output against a fake LocalClient."""

import pytest

from salt_kvm import fleet
from salt_kvm.errors import InvalidInput
from tests.support import fakes

HOST = {
    "bridges": [{"name": "br0", "state": "up", "ports": ["eno1", "vnet0"]}],
    "networks": [{"name": "lan", "active": True, "autostart": True, "bridge": "br0"}],
    "pools": [
        {
            "name": "vms",
            "type": "dir",
            "active": True,
            "capacity": 100 * 2**30,
            "allocation": 25 * 2**30,
            "available": 75 * 2**30,
            "used_pct": 25.0,
            "volumes": 3,
        },
        {
            "name": "old",
            "type": "dir",
            "active": False,
            "capacity": None,
            "allocation": None,
            "available": None,
            "used_pct": None,
            "volumes": None,
        },
    ],
    "vms": [
        {
            "name": "web01",
            "state": "running",
            "autostart": True,
            "vcpus": 2,
            "memory": 2 * 2**30,
            "snapshots": 2,
            "oldest_snapshot": "auto-1",
            "oldest_snapshot_age": 3 * 86400,
        }
    ],
}

APPLY_OK = {
    "kvm_|-kvm-pool-vms_|-vms_|-pool_present": {"result": True, "changes": {}, "comment": "ok"}
}
APPLY_DRIFT = {
    "kvm_|-kvm-pool-vms_|-vms_|-pool_present": {"result": True, "changes": {}, "comment": "ok"},
    "kvm_|-kvm-volume-vms-a.qcow2_|-a.qcow2_|-volume_present": {
        "result": None,
        "changes": {"volume": {"old": None, "new": {"size": 1}}},
    },
}
APPLY_BAD = [
    "Rendering SLS 'base:kvm.storage' failed: kvm:pools:vms:volumes:a:size: '20X' is not a size"
]


class FakeClient:
    def __init__(self, returns):
        self.returns = returns
        self.calls = []

    def cmd_iter(self, tgt, fun, arg, **kwargs):
        self.calls.append(("cmd_iter", tgt, fun, arg, kwargs))
        for minion, value in self.returns.items():
            yield {minion: value}

    def cmd_batch(self, tgt, fun, arg=(), **kwargs):
        self.calls.append(("cmd_batch", tgt, fun, arg, kwargs))
        for minion, value in self.returns.items():
            yield {minion: value}


def test_report_gathers_host_and_drift_in_one_job():
    client = FakeClient(
        {
            "hv1": {"ret": {"kvm.host_report": HOST, "state.apply": APPLY_OK}},
            "hv2": {"ret": {"kvm.host_report": HOST, "state.apply": APPLY_DRIFT}},
            "hv3": {"ret": {"kvm.host_report": HOST, "state.apply": APPLY_BAD}},
            "hv4": {"failed": True},
        }
    )
    data = fleet.report(client, "hv*")
    ((_, tgt, funs, args, kwargs),) = client.calls
    assert tgt == "hv*" and funs == ["kvm.host_report", "state.apply"]
    assert args[1] == ["kvm", {"test": True, "__kwarg__": True}]
    assert kwargs["expect_minions"] is True
    hosts = data["hosts"]
    assert hosts["hv1"]["drift"] == {"pending": {}, "errors": []}
    assert hosts["hv2"]["drift"]["pending"] == {
        "kvm-volume-vms-a.qcow2": {"volume": {"old": None, "new": {"size": 1}}}
    }
    assert "'20X' is not a size" in hosts["hv3"]["drift"]["errors"][0]
    assert hosts["hv4"]["error"].startswith("no return")
    assert data["summary"] == {
        "hosts": 4,
        "in_line": ["hv1"],
        "drifted": ["hv2"],
        "failed": ["hv3", "hv4"],
    }


def test_report_without_drift_is_one_function():
    client = FakeClient({"hv1": {"ret": {"kvm.host_report": HOST}}})
    data = fleet.report(client, "hv1", drift=False)
    assert client.calls[0][2] == ["kvm.host_report"]
    assert data["hosts"]["hv1"]["drift"] is None
    assert data["summary"]["in_line"] == ["hv1"]


def test_report_host_error_is_reported():
    client = FakeClient(
        {
            "hv1": {
                "ret": {
                    "kvm.host_report": "ERROR: cannot connect to libvirt",
                    "state.apply": APPLY_OK,
                }
            }
        }
    )
    data = fleet.report(client)
    assert data["hosts"]["hv1"]["error"] == "ERROR: cannot connect to libvirt"
    assert data["summary"]["failed"] == ["hv1"]


def test_format_report_tables_and_summary():
    data = {
        "hosts": {
            "hv1": {"report": HOST, "drift": {"pending": {}, "errors": []}, "error": None},
            "hv2": {
                "report": HOST,
                "drift": {"pending": {"kvm-volume-vms-a.qcow2": {"volume": {}}}, "errors": []},
                "error": None,
            },
            "hv3": {
                "report": None,
                "drift": {"pending": {}, "errors": ["kvm:x: bad"]},
                "error": "no return",
            },
        }
    }
    text = fleet.format_report(data)
    assert "hv1\n  bridge  state  ports\n  br0     up     eno1,vnet0\n" in text
    assert "  vms   dir   yes     100.0G    25.0G  25.0%  3" in text
    assert "  old   dir   no      -         -      -      -" in text
    assert "  web01  running  yes        2      2.0G    2          auto-1  3d" in text
    assert "drift: none (in line with its pillar)" in text
    assert "drift: 1 state(s) would change\n    kvm-volume-vms-a.qcow2: volume" in text
    assert "error: no return" in text and "drift: ERROR 1\n    kvm:x: bad" in text
    assert text.endswith("3 host(s): 1 in line with their pillar, 1 drifted, 1 failed (hv3)\n")
    assert fleet.format_report({"hosts": {}}) == "no hosts matched the target\n"


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "-"), (5, "5s"), (59, "59s"), (60, "1m"), (7200, "2h"), (86400 * 9, "9d")],
)
def test_age(seconds, text):
    assert fleet._age(seconds) == text  # pylint: disable=protected-access


def test_select_vms_with_patterns():
    names = ["web01", "web02", "db01", "kvt-x"]
    assert fleet.select_vms(names, "web*") == ["web01", "web02"]
    assert fleet.select_vms(names, "db01, web02") == ["db01", "web02"]
    assert fleet.select_vms(names, ["*"]) == sorted(names)
    assert fleet.select_vms(names, ["nope"]) == []


@pytest.mark.parametrize("bad", [None, "", [], [""], 5, [1]])
def test_vms_is_required_and_typed(bad):
    with pytest.raises(InvalidInput) as err:
        fleet.select_vms(["a"], bad)
    assert err.value.path == "vms"


def test_vm_action_batches_and_reports_per_vm():
    client = FakeClient(
        {
            "hv1": {
                "result": True,
                "vms": {"web01": {"result": True, "changed": True, "return": {"name": "s"}}},
            },
            "hv2": {
                "result": False,
                "vms": {
                    "web02": {"result": False, "changed": False, "comment": "VM 'web02': boom"}
                },
            },
            "hv3": {"result": True, "vms": {}},
            "hv4": "ERROR: kvm.snapshot_vms is not available",
            "hv5": {},
        }
    )
    ret = fleet.vm_action(
        client, "hv*", "web*", "kvm.snapshot_vms", args=["s"], batch="25%", expected=["hv1", "hv6"]
    )
    ((_, tgt, fun, arg, kwargs),) = client.calls
    assert (tgt, fun, arg, kwargs["batch"]) == ("hv*", "kvm.snapshot_vms", [["web*"], "s"], "25%")
    assert ret["result"] is False
    assert ret["vms"]["hv1/web01"]["result"] is True
    assert ret["vms"]["hv2/web02"]["comment"] == "VM 'web02': boom"
    assert ret["hosts"]["hv1"] == {"result": True, "vms": 1}
    assert ret["hosts"]["hv2"] == {"result": False, "vms": 1}
    assert ret["hosts"]["hv3"] == {"result": True, "vms": 0}  # no matching VM there: nothing to do
    assert (
        ret["hosts"]["hv4"]["result"] is False and "not available" in ret["hosts"]["hv4"]["comment"]
    )
    assert ret["hosts"]["hv5"] == {"result": False, "comment": "no return (timed out)"}
    assert ret["hosts"]["hv6"] == {
        "result": False,
        "comment": "no return (minion down or timed out)",
    }


def test_vm_action_with_no_host_fails():
    assert (
        fleet.vm_action(FakeClient({}), "none*", "web*", "kvm.revert_vms", args=["s"])["result"]
        is False
    )


def _session(*domains):
    return fakes.FakeSession(conn=fakes.FakeConnection(domains=domains))


def test_snapshot_vms_skips_taken_and_isolates_failures():
    session = _session(
        fakes.FakeDomain("web01", ["pre"]),
        fakes.FakeDomain("web02"),
        fakes.FakeDomain("web03"),
        fakes.FakeDomain("db01"),
    )
    calls = []

    def create(vm, name, **kwargs):
        calls.append((vm, name, kwargs))
        if vm == "web03":
            raise RuntimeError("VM 'web03': disk busy\nmore")
        return {"name": name}

    ret = fleet.snapshot_vms(session, "web*", "pre", create, memory=False)
    assert ret["result"] is False
    out = ret["vms"]
    assert calls == [("web02", "pre", {"memory": False}), ("web03", "pre", {"memory": False})]
    assert out["web01"] == {
        "result": True,
        "changed": False,
        "comment": "snapshot 'pre' exists already",
    }
    assert out["web02"] == {"result": True, "changed": True, "return": {"name": "pre"}}
    assert out["web03"] == {"result": False, "changed": False, "comment": "VM 'web03': disk busy"}
    assert "db01" not in out


def test_revert_vms_needs_a_name():
    with pytest.raises(InvalidInput) as err:
        fleet.revert_vms(_session(), "web*", None, lambda *a: None)
    assert err.value.path == "name"


def test_vm_action_passes_keyword_arguments():
    client = FakeClient({"hv1": {"result": True, "vms": {}}})
    fleet.vm_action(
        client,
        "hv1",
        "web*",
        "kvm.snapshot_vms",
        args=["s"],
        kwargs={"memory": False, "__pub_fun": "x"},
    )
    assert client.calls[0][3] == [["web*"], "s", {"memory": False, "__kwarg__": True}]


def test_default_snapshot_name():
    assert fleet.default_snapshot_name(0) == "fleet-19700101-000000"
