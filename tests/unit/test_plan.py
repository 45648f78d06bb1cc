"""The shared state engine, with a resource made of plain dicts, and the contract it checks."""

import dataclasses

import pytest

from salt_kvm import plan
from salt_kvm.errors import KvmError, Refused


class World:
    """What a resource manages, outside the resource (like the libvirt connection): the
    engine compares it by identity, so changing it is not the resource changing itself."""

    def __init__(self, data):
        self.data = data
        self.calls = []


class Box(plan.Resource):
    """A resource over a plain dict: every step follows the contract."""

    what = "box 'b'"

    def __init__(self, host, desired, fail_apply=False, drift=False, guard=False):
        self.world = World(host)
        self.desired = desired
        self.fail_apply, self.drift, self.guard = fail_apply, drift, guard

    @property
    def applied(self):
        return self.world.calls.count("apply")

    def read(self):
        return dict(self.world.data) if self.world.data is not None else None

    def plan(self, current):
        if self.guard and current and current.get("size", 0) > self.desired.get("size", 0):
            raise Refused("shrinking would lose data; force: True to allow")
        return plan.Plan(plan.diff(current, self.desired), existed=current is not None)

    def apply(self, planned, undo):
        self.world.calls.append("apply")
        host = self.world.data
        undo.record("before", dict(host))
        for key, change in planned.changes.items():
            host[key] = change["new"]
        if self.drift:
            host["size"] = -1
        if self.fail_apply:
            raise KvmError("disk on fire")

    def restore(self, before, undo):
        assert undo.get("before") == before, "restore gets what apply recorded"
        self.world.data.clear()
        self.world.data.update(before)
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
        super().__init__({}, desired)

    def read(self):
        made = self.world.data.get("made")
        return dict(made) if made is not None else None

    def plan(self, current):
        if current is None:
            changes = dict({"box": {"old": None, "new": "b"}}, **plan.diff({}, self.desired))
            return plan.Plan(changes, existed=False)
        return plan.Plan(plan.diff(current, self.desired))

    def apply(self, planned, undo):
        self.world.data["made"] = dict(self.desired)


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


# --- the contract itself -----------------------------------------------------


def test_a_plan_is_frozen():
    planned = plan.Plan({"size": {"old": 1, "new": 2}}, payload=("p",), notes=("n",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.changes = {}  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.payload = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        planned.changes["size"] = {"old": 1, "new": 3}  # type: ignore[index]
    with pytest.raises(TypeError):
        del planned.changes["size"]  # type: ignore[attr-defined]
    # the engine hands Salt a plain copy: changing that does not change the plan
    salt = planned.salt_changes()
    salt["other"] = 1
    assert dict(planned.changes) == {"size": {"old": 1, "new": 2}}


def test_a_plan_copies_the_changes_it_is_given():
    changes = {"size": {"old": 1, "new": 2}}
    planned = plan.Plan(changes)
    changes["later"] = {"old": None, "new": 1}
    assert set(planned.changes) == {"size"}


class Recorder(Box):
    """Keeps the Undo apply got (in the world, not in itself) and checks restore gets it."""

    def apply(self, planned, undo):
        self.world.calls.append(("apply", undo))
        undo.record("step", 1)
        raise KvmError("half way")

    def restore(self, before, undo):
        self.world.calls.append(("restore", undo))
        return "the box as it was" if undo.get("step") == 1 else None


def test_the_engine_passes_the_same_undo_to_restore():
    box = Recorder({"size": 1}, {"size": 2})
    ret = plan.ensure("b", box)
    assert ret["result"] is False and "restored the box as it was" in ret["comment"]
    (step1, undo1), (step2, undo2) = box.world.calls
    assert (step1, step2) == ("apply", "restore") and undo1 is undo2
    assert "step" in undo1 and undo1.get("step") == 1 and undo1


def test_an_empty_undo_is_false_and_unknown_steps_are_absent():
    undo = plan.Undo()
    assert not undo and "x" not in undo and undo.get("x", 7) == 7


class SelfishPlan(Box):
    def plan(self, current):
        self.seen = current  # state kept between the engine's calls: not allowed
        return super().plan(current)


class SelfishApply(Box):
    def apply(self, planned, undo):
        super().apply(planned, undo)
        self.done = True  # ditto


@pytest.mark.parametrize("test", [False, True], ids=["apply", "test-mode"])
def test_assigning_to_self_in_plan_breaks_the_contract(monkeypatch, test):
    monkeypatch.setenv("KVT_STRICT_CONTRACT", "1")
    host = {"size": 1}
    ret = plan.ensure("b", SelfishPlan(host, {"size": 2}), test=test)
    assert ret["result"] is False and ret["changes"] == {}
    assert "SelfishPlan.plan changed the resource's own state (seen)" in ret["comment"]
    assert host == {"size": 1}, "nothing was applied"


def test_assigning_to_self_in_apply_breaks_the_contract_and_restores(monkeypatch):
    monkeypatch.setenv("KVT_STRICT_CONTRACT", "1")
    host = {"size": 1}
    ret = plan.ensure("b", SelfishApply(host, {"size": 2}))
    assert ret["result"] is False
    assert "SelfishApply.apply changed the resource's own state (done)" in ret["comment"]
    assert "restored the box as it was" in ret["comment"] and host == {"size": 1}
    assert isinstance(plan.ContractBroken("x"), KvmError)


def test_without_the_strict_switch_the_engine_does_not_check(monkeypatch):
    monkeypatch.delenv("KVT_STRICT_CONTRACT", raising=False)
    assert plan.ensure("b", SelfishPlan({"size": 1}, {"size": 2}))["result"] is True
    assert plan.ensure("b", SelfishApply({"size": 1}, {"size": 2}))["result"] is True


class Noted(Box):
    def plan(self, current):
        found = super().plan(current)
        return plan.Plan(found.changes, found.existed, notes=("the lid is loose", "it hums"))


def test_summary_says_the_notes_of_the_plan():
    ret = plan.ensure("b", Noted({"size": 1}, {"size": 2}), test=True)
    assert ret["comment"] == (
        "box 'b' would be changed (size) (note: the lid is loose) (note: it hums)"
    )
    ret = plan.ensure("b", Noted({"size": 1}, {"size": 2}))
    assert ret["result"] is True
    assert ret["comment"] == "box 'b' was changed (size) (note: the lid is loose) (note: it hums)"


def test_verify_defaults_to_the_changes_of_a_new_plan():
    box = Box({"size": 1}, {"size": 2})
    planned = box.plan(box.read())
    assert box.verify(planned, {"size": 2}) == {}
    assert box.verify(planned, {"size": 3}) == {"size": {"old": 3, "new": 2}}
