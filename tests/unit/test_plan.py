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
    assert ret == {
        "name": "b",
        "result": True,
        "changes": {},
        "comment": "box 'b' is already as declared",
    }


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
    assert (
        plan.absent("x", "thing 'x'", exists, lambda cur: store.pop("x"), test=True)["result"]
        is None
    )
    assert store == {"x": 1}
    ret = plan.absent("x", "thing 'x'", exists, lambda cur: store.pop("x"))
    assert ret["result"] is True and ret["changes"] == {"removed": {"old": 1, "new": None}}
    assert (
        plan.absent("x", "thing 'x'", exists, lambda cur: None)["comment"]
        == "thing 'x' is already absent"
    )


def test_absent_guard():
    def guard(cur):
        raise Refused("2 VMs use it; force: True to remove anyway")

    ret = plan.absent("x", "thing 'x'", lambda: 1, lambda cur: None, guard=guard)
    assert ret["result"] is False and "refused: 2 VMs use it" in ret["comment"]


# --- comments that say what happened; sizes for people ----------------------


class Created(Box):
    """A box that does not exist yet: ``read`` gives None until applied."""

    presence_key = "box"

    def __init__(self, desired):
        super().__init__(None, desired)
        self.made = None

    def read(self):
        return dict(self.made) if self.made is not None else None

    def changes(self, current):
        if current is None:
            return dict({"box": {"old": None, "new": "b"}}, **plan.diff({}, self.desired))
        return plan.diff(current, self.desired)

    def apply(self, current, changes):
        self.made = dict(self.desired)


def test_a_new_object_was_created_not_changed():
    assert (
        plan.ensure("b", Created({"size": 2, "colour": "red"}), test=True)["comment"]
        == "box 'b' would be created (colour, size)"
    )
    assert (
        plan.ensure("b", Created({"size": 2, "colour": "red"}))["comment"]
        == "box 'b' was created (colour, size)"
    )
    assert (
        plan.ensure("b", Box({"size": 1}, {"size": 2}))["comment"] == "box 'b' was changed (size)"
    )


class Boxes(Box):
    what = "boxes 'b*'"
    plural = True


def test_plural_objects_are_and_were():
    assert (
        plan.ensure("b", Boxes({"size": 1}, {"size": 1}))["comment"]
        == "boxes 'b*' are already as declared"
    )
    assert (
        plan.ensure("b", Boxes({"size": 1}, {"size": 2}))["comment"]
        == "boxes 'b*' were changed (size)"
    )


def test_sizes_in_changes_are_for_people_and_the_bytes_are_kept():
    ret = plan.state_return(
        "v",
        True,
        {"size": {"old": 536870912, "new": 2147483648}, "format": {"old": "raw", "new": "qcow2"}},
        "ok",
    )
    shown = plan.for_people(ret)
    assert shown["changes"] == {
        "size": {"old": "512 MiB", "new": "2 GiB"},
        "format": {"old": "raw", "new": "qcow2"},
    }
    assert shown["bytes"] == {"size": {"old": 536870912, "new": 2147483648}}
    assert ret["changes"]["size"]["new"] == 2147483648, "the input is not changed"
    # nested descriptions (a created volume, a removed pool); booleans and other numbers stay
    ret = plan.state_return(
        "p",
        None,
        {
            "removed": {
                "old": {"capacity": 1024**3, "allocation": 0, "volumes": 3, "active": True},
                "new": None,
            }
        },
    )
    shown = plan.for_people(ret)
    assert shown["changes"]["removed"]["old"] == {
        "capacity": "1 GiB",
        "allocation": "0 bytes",
        "volumes": 3,
        "active": True,
    }
    assert shown["bytes"] == {"removed": {"old": {"capacity": 1024**3, "allocation": 0}}}
    # nothing to translate: the very same return, no bytes key
    plain = plan.state_return("b", True, {"stp": {"old": False, "new": True}})
    assert plan.for_people(plain) is plain and "bytes" not in plain
    assert plan.for_people("not a return") == "not a return"
