"""The shared state engine, with a resource made of plain dicts."""

from salt_kvm import plan
from salt_kvm.errors import KvmError, Refused


class Box(plan.Resource):
    what = "box 'b'"

    def __init__(self, host, desired, fail_apply=False, drift=False, guard=False):
        self.host, self.desired = host, desired
        self.fail_apply, self.drift, self.guard = fail_apply, drift, guard
        self.applied = 0

    def read(self):
        return dict(self.host) if self.host is not None else None

    def changes(self, current):
        if self.guard and current and current.get("size", 0) > self.desired.get("size", 0):
            raise Refused("shrinking would lose data; force: True to allow")
        return plan.diff(current, self.desired)

    def apply(self, current, changes):
        self.applied += 1
        for key, change in changes.items():
            self.host[key] = change["new"]
        if self.drift:
            self.host["size"] = -1
        if self.fail_apply:
            raise KvmError("disk on fire")

    def restore(self, before):
        self.host.clear()
        self.host.update(before)
        return "the box as it was"


def test_no_changes_is_true_and_empty():
    ret = plan.ensure("b", Box({"size": 1}, {"size": 1}))
    assert ret == {"name": "b", "result": True, "changes": {}, "comment": "box 'b' is already as declared"}


def test_test_mode_predicts_and_changes_nothing():
    host = {"size": 1}
    box = Box(host, {"size": 2})
    ret = plan.ensure("b", box, test=True)
    assert ret["result"] is None
    assert ret["changes"] == {"size": {"old": 1, "new": 2}}
    assert host == {"size": 1} and box.applied == 0
    real = plan.ensure("b", Box(host, {"size": 2}))
    assert real["result"] is True and real["changes"] == ret["changes"]
    assert plan.ensure("b", Box(host, {"size": 2}))["changes"] == {}


def test_failed_apply_restores_and_says_so():
    host = {"size": 1}
    ret = plan.ensure("b", Box(host, {"size": 2}, fail_apply=True))
    assert ret["result"] is False
    assert "disk on fire" in ret["comment"] and "restored the box as it was" in ret["comment"]
    assert host == {"size": 1}


def test_failed_verify_restores():
    host = {"size": 1}
    ret = plan.ensure("b", Box(host, {"size": 2}, drift=True))
    assert ret["result"] is False and "verify after apply failed" in ret["comment"]
    assert host == {"size": 1}


def test_refusal_changes_nothing_in_both_modes():
    for test in (True, False):
        host = {"size": 5}
        ret = plan.ensure("b", Box(host, {"size": 2}, guard=True), test=test)
        assert ret["result"] is False and "refused" in ret["comment"] and ret["changes"] == {}
        assert host == {"size": 5}


def test_diff_ignores_undeclared_keys():
    assert plan.diff({"a": 1, "b": 2}, {"a": 1, "b": None}) == {}
    assert plan.diff(None, {"a": 1}) == {"a": {"old": None, "new": 1}}


def test_absent():
    store = {"x": 1}
    exists = lambda: store.get("x")  # noqa: E731
    assert plan.absent("x", "thing 'x'", exists, lambda cur: store.pop("x"), test=True)["result"] is None
    assert store == {"x": 1}
    ret = plan.absent("x", "thing 'x'", exists, lambda cur: store.pop("x"))
    assert ret["result"] is True and ret["changes"] == {"removed": {"old": 1, "new": None}}
    assert plan.absent("x", "thing 'x'", exists, lambda cur: None)["comment"] == "thing 'x' is already absent"


def test_absent_guard():
    def guard(cur):
        raise Refused("2 VMs use it; force: True to remove anyway")

    ret = plan.absent("x", "thing 'x'", lambda: 1, lambda cur: None, guard=guard)
    assert ret["result"] is False and "refused: 2 VMs use it" in ret["comment"]
