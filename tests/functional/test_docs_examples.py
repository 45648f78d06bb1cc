"""Every example in the docs is run.

* Every file under ``docs/examples/`` is picked up by itself. A pillar example
  (a YAML mapping with a ``kvm`` key, and ``pillar.example``) is validated with
  :mod:`salt_kvm.schema`, rendered with :mod:`salt_kvm.formula`, and then
  applied for real with ``salt-call --local state.apply kvm`` in a sandbox:
  every object renamed ``kvt-<uid>``, bridges in a ``kvt-`` network namespace
  whose NIC is a veth to a "LAN" namespace holding the gateway, addresses of
  libvirt networks moved into a free part of 198.51.100.0/24, pools on files,
  loop devices and a one-monitor Ceph, VMs that are tiny real VMs, persisted
  network files in private copies of ``/etc/network`` (and the other
  configuration directories), seen only by that ``salt-call``. It is applied
  twice (the second apply must change nothing), then removed. What this host
  cannot run (NFS, logical volumes, ...) is defined and undefined in libvirt
  instead, and the test for that part skips naming the kernel's limit.
* Any other SLS example (orchestration, states) is rendered by the real
  ``salt-call state.show_sls``; the ``kvm`` states, execution functions and
  runner functions it names must exist and accept its arguments.
* Every ``.. code-block:: yaml`` holding a ``kvm`` pillar in ``docs/**/*.rst``
  must be valid, and every ``salt``/``salt-call``/``salt-run`` command in the
  docs that calls a ``kvm.*`` function must name a real function with
  arguments it accepts.
"""

import ast
import base64
import functools
import json
import os
import pathlib
import re
import shlex
import shutil
import tempfile

import pytest
import yaml

from salt_kvm import formula, schema
from tests.support import docs_sandbox
from tests.support.saltcall import SaltCall, changed, repo_file_root, state_results

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
PILLAR_EXAMPLE = REPO / "pillar.example"
YAML_SUFFIXES = (".sls", ".yaml", ".yml")


# --- the examples ---------------------------------------------------------------------


def _example_files():
    return sorted(p for p in EXAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _rel(path):
    return str(path.relative_to(REPO))


def _load_yaml(path):
    """The example's data, or None when it needs rendering (Jinja) first."""
    text = path.read_text(encoding="utf-8")
    if "{%" in text or "{{" in text:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _is_pillar(path):
    data = _load_yaml(path) if path.suffix in YAML_SUFFIXES else None
    return isinstance(data, dict) and "kvm" in data


PILLAR_FILES = [p for p in _example_files() if _is_pillar(p)] + [PILLAR_EXAMPLE]
SLS_FILES = [p for p in _example_files() if p.suffix == ".sls" and not _is_pillar(p)]
OTHER_FILES = [p for p in _example_files() if p not in PILLAR_FILES and p not in SLS_FILES]


def _pillar(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if path != PILLAR_EXAMPLE or "kvm" in data else {"kvm": data}


def _sls_name(path):
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


# --- the functions that exist (read from the loader modules' source) ---------------------


@functools.cache
def _signatures(relpath):
    """``{function: (params, required, has_kwargs, has_varargs)}`` of a loader module."""
    tree = ast.parse((REPO / relpath).read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = node.args
            positional = [a.arg for a in args.posonlyargs + args.args]
            required = positional[: len(positional) - len(args.defaults)]
            params = positional + [a.arg for a in args.kwonlyargs]
            out[node.name] = (params, required, args.kwarg is not None, args.vararg is not None)
    return out


MODULES = {"execution": "_modules/kvm.py", "state": "_states/kvm.py", "runner": "_runners/kvm.py"}


def _check_call(kind, func, positional=0, keywords=(), where=""):
    """Problems with calling ``kvm.<func>`` of ``kind`` with these arguments (empty: fine)."""
    sigs = _signatures(MODULES[kind])
    if func not in sigs:
        return [f"{where}: kvm.{func} is not a {kind} function (known: {', '.join(sorted(sigs))})"]
    params, required, has_kwargs, has_varargs = sigs[func]
    problems = []
    if positional > len(params) and not has_varargs:
        problems.append(
            f"{where}: kvm.{func} takes at most {len(params)} positional arguments, got "
            f"{positional}"
        )
    for key in keywords:
        if key not in params and not has_kwargs:
            problems.append(
                f"{where}: kvm.{func} has no argument {key!r} (it takes {', '.join(params)})"
            )
    named = set(params[:positional]) | set(keywords)
    missing = [p for p in required if p not in named]
    if missing and (
        positional or keywords
    ):  # a bare name is a mention in prose (``salt-call kvm.x``)
        problems.append(f"{where}: kvm.{func} needs {', '.join(missing)}")
    return problems


def _check_states(states, where):
    """The kvm.* states, salt.runner kvm.* and module.run-free salt.function calls of rendered high
    data."""
    problems = []
    for sid, body in states.items():
        if sid.startswith("__") or not isinstance(body, dict):
            continue
        for mod, args in body.items():
            if mod.startswith("__") or not isinstance(args, list):
                continue
            fun = next((a for a in args if isinstance(a, str)), None)
            if "." in mod:
                mod, fun = mod.split(".", 1)
            kwargs = {}
            for arg in args:
                if isinstance(arg, dict):
                    kwargs.update(arg)
            requisites = {
                "require",
                "watch",
                "onfail",
                "onchanges",
                "prereq",
                "use",
                "order",
                "require_in",
                "watch_in",
                "onfail_in",
                "onchanges_in",
                "listen",
                "unless",
                "onlyif",
                "failhard",
                "check_cmd",
                "retry",
                "parallel",
            }
            kwargs = {k: v for k, v in kwargs.items() if k not in requisites}
            if mod == "kvm":
                problems += _check_call(
                    "state", fun, 0, set(kwargs) | {"name"}, f"{where}: {sid}"
                )  # name defaults to the ID
            elif (
                mod == "salt"
                and fun in ("runner", "function")
                and str(kwargs.get("name", "")).startswith("kvm.")
            ):
                kind = "runner" if fun == "runner" else "execution"
                target = {
                    "tgt",
                    "tgt_type",
                    "arg",
                    "kwarg",
                    "ret",
                    "timeout",
                    "batch",
                    "ssh",
                    "expect_minions",
                    "fail_minions",
                    "subset",
                }
                keys = (
                    set(kwargs) - {"name"} if kind == "runner" else set(kwargs.get("kwarg") or {})
                )
                if kind == "execution":
                    keys -= target
                problems += _check_call(
                    kind, kwargs["name"][4:], len(kwargs.get("arg") or []), keys, f"{where}: {sid}"
                )
    return problems


# --- unit level: schema and formula --------------------------------------------------------


@pytest.mark.parametrize("path", PILLAR_FILES, ids=_rel)
def test_pillar_example_is_valid_and_renders(path):
    data = _pillar(path)
    tree = schema.validate_pillar(data["kvm"])  # raises, naming the path, when invalid
    assert tree
    rendered = {}
    for part in formula.PARTS:
        states = formula.render(part, data["kvm"])
        assert not set(states) & set(rendered), f"state ids of {part} collide"
        rendered.update(states)
    assert rendered, f"{_rel(path)} renders no state"
    assert not _check_states(rendered, _rel(path))
    for job, spec in (data.get("schedule") or {}).items():
        _check_schedule_job(job, spec)


def _check_schedule_job(job, spec):
    """A Salt scheduler job as the docs show it: a function that exists, SLS names that exist."""
    assert isinstance(spec, dict) and spec.get("function"), f"schedule:{job}: needs function"
    intervals = {"seconds", "minutes", "hours", "days", "when", "cron", "once"}
    assert intervals & set(spec), f"schedule:{job}: needs one of {sorted(intervals)}"
    known = intervals | {
        "function",
        "args",
        "kwargs",
        "splay",
        "maxrunning",
        "return_job",
        "jid_include",
        "enabled",
        "range",
        "after",
        "until",
        "run_on_start",
        "returner",
        "name",
        "skip_during_range",
        "run_after_skip_range",
    }
    assert set(spec) <= known, f"schedule:{job}: unknown keys {sorted(set(spec) - known)}"
    fun = spec["function"]
    if fun.startswith("kvm."):
        assert not _check_call(
            "execution",
            fun[4:],
            len(spec.get("args") or []),
            set(spec.get("kwargs") or {}),
            f"schedule:{job}",
        )
    if fun in ("state.apply", "state.sls"):
        for sls in spec.get("args") or []:
            parts = str(sls).split(".")
            candidates = [
                REPO.joinpath(*parts).with_suffix(".sls"),
                REPO.joinpath(*parts, "init.sls"),
            ]
            assert any(c.exists() for c in candidates), f"schedule:{job}: no SLS {sls}"


def test_pillar_example_renders_to_the_expected_states():
    """pillar.example through the formula: one state per object, volumes after their pool and
    backing."""
    kvm = _pillar(PILLAR_EXAMPLE)["kvm"]
    states = {}
    for part in formula.PARTS:
        states.update(formula.render(part, kvm))
    funcs = {sid: next(iter(body)) for sid, body in states.items()}
    assert funcs == {
        "kvm-bridge-br0": "kvm.bridge_present",
        "kvm-bridge-br-vm": "kvm.bridge_present",
        "kvm-bridge-br-old": "kvm.bridge_absent",
        "kvm-network-default": "kvm.network_present",
        "kvm-network-lan": "kvm.network_present",
        "kvm-pool-default": "kvm.pool_present",
        "kvm-volume-default-ubuntu.qcow2": "kvm.volume_present",
        "kvm-volume-default-base.img": "kvm.volume_present",
        "kvm-volume-default-web01.qcow2": "kvm.volume_present",
        "kvm-pool-vms": "kvm.pool_present",
        "kvm-vm-web01": "kvm.vm_present",
        "kvm-snapshots-web01": "kvm.snapshots_retained",
    }

    def args(sid):
        return {k: v for item in states[sid][funcs[sid]] for k, v in item.items()}

    assert (
        args("kvm-bridge-br0")["ports"] == [{"name": "eno1"}]
        and args("kvm-bridge-br0")["persist"] == "auto"
    )
    assert args("kvm-volume-default-web01.qcow2")["require"] == [
        {"kvm": "kvm-pool-default"},
        {"kvm": "kvm-volume-default-base.img"},
    ]
    assert args("kvm-volume-default-ubuntu.qcow2")["size"] == 20 * 1024**3
    assert args("kvm-snapshots-web01")["require"] == [{"kvm": "kvm-vm-web01"}]
    assert {k: v for k, v in args("kvm-snapshots-web01").items() if k != "require"} == {
        "name": "web01",
        "every": 86400,
        "keep": 7,
        "prefix": "auto-",
        "memory": True,
    }
    vm = args("kvm-vm-web01")
    assert (
        vm["memory"] == 2 * 1024**3
        and vm["run_state"] == "running"
        and {"kvm": "kvm-volume-default-web01.qcow2"} in vm["require"]
    )
    order = list(formula.render("storage", kvm))
    assert order.index("kvm-volume-default-base.img") < order.index(
        "kvm-volume-default-web01.qcow2"
    )


# --- SLS examples (orchestration, states): real salt-call renders them -----------------------


@pytest.fixture(scope="module")
def render_call(tmp_path_factory):
    root = tmp_path_factory.mktemp("kvt-docs-render")
    return SaltCall(root, file_roots=[repo_file_root(root / "file-root")])


@pytest.mark.parametrize("path", SLS_FILES, ids=_rel)
def test_sls_example_renders_with_salt(path, render_call):
    code, data, err = render_call.run("state.show_sls", _sls_name(path))
    assert code == 0 and isinstance(data, dict), f"{_sls_name(path)} does not render: {data}\n{err}"
    assert data, f"{_sls_name(path)} renders no state"
    problems = _check_states(data, _rel(path))
    assert not problems, "\n".join(problems)
    # an orchestration names runner functions that exist (checked above); show what it runs
    for sid, body in data.items():
        for mod in body:
            if not mod.startswith("__"):
                assert mod in ("salt", "kvm", "test", "cmd", "file", "module"), (
                    f"{sid}: unexpected state module {mod}"
                )


# --- docs/**/*.rst: inline pillars and commands --------------------------------------------------


def _rst_files():
    return sorted(DOCS.rglob("*.rst"))


def _code_blocks(text, languages):
    """``(line number, code)`` of each ``.. code-block:: LANG`` (and ``::``-free) block."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block::\s*(\S+)", lines[i])
        if match and match.group(2) in languages:
            indent = len(match.group(1))
            start = i + 1
            body = []
            j = start
            while j < len(lines) and (
                not lines[j].strip()
                or lines[j].startswith(":", indent + 3)
                or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                body.append(lines[j])
                j += 1
            code = [b for b in body if not re.match(r"^\s+:\w+:", b)]
            out.append((start + 1, _dedent(code)))
            i = j
        else:
            i += 1
    return out


def _dedent(lines):
    width = min((len(b) - len(b.lstrip()) for b in lines if b.strip()), default=0)
    return "\n".join(b[width:] for b in lines).strip("\n") + "\n"


def test_inline_yaml_pillars_in_the_docs_are_valid():
    problems, checked = [], 0
    for rst in _rst_files():
        for line, code in _code_blocks(rst.read_text(encoding="utf-8"), ("yaml", "yaml+jinja")):
            where = f"{rst.relative_to(REPO)}:{line}"
            try:
                data = yaml.safe_load(code)
            except yaml.YAMLError as exc:
                if re.search(r"^kvm:", code, re.MULTILINE) and "{%" not in code:
                    problems.append(f"{where}: the kvm pillar is not valid YAML: {exc}")
                continue
            if not isinstance(data, dict) or "kvm" not in data:
                continue
            checked += 1
            try:
                schema.validate_pillar(data["kvm"])
            except schema.InvalidInput as exc:
                problems.append(f"{where}: {exc}")
    assert not problems, "\n".join(problems)
    assert checked >= 5, f"only {checked} inline kvm pillars found in the docs"


#: salt options that take a value (the rest are flags)
_VALUE_OPTS = {
    "-b",
    "--batch",
    "--batch-size",
    "--batch-wait",
    "-t",
    "--timeout",
    "--out",
    "-c",
    "--config-dir",
    "--return",
    "-l",
    "--log-level",
    "--out-file",
    "--out-indent",
    "-d",
}


def _commands(text):
    """Every ``salt``/``salt-call``/``salt-run`` command line in ``text`` (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", text)  # shell continuations
    text = re.sub(
        r"``(.+?)``", lambda m: "``" + m.group(1).replace("\n", " ") + "``", text, flags=re.DOTALL
    )  # inline literals over two lines
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s`$(])(salt|salt-call|salt-run)\s+([^`\n]*)", line):
            yield match.group(1), match.group(2)


def _parse_command(cmd, rest):
    """``(function, positional count, keyword names)`` of a kvm.* call, else None."""
    rest = rest.split(" #", 1)[0].split("|", 1)[0].replace("[", " ").replace("]", " ")
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    positional, skip = [], False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok.startswith("-"):
            skip = tok in _VALUE_OPTS
            continue
        positional.append(tok)
    if cmd == "salt":
        positional = positional[1:]  # the target
    if not positional or not re.fullmatch(r"kvm\.\w+", positional[0]):
        return None
    func, args = positional[0][4:], positional[1:]
    keywords = {a.split("=", 1)[0] for a in args if re.match(r"^\w+=", a)}
    count = len([a for a in args if not re.match(r"^\w+=", a) and a not in ("...", "\u2026")])
    return func, count, keywords


def test_commands_in_the_docs_name_real_functions():
    problems, checked = [], 0
    # docs/demo.rst is a captured transcript: its "=== salt-call ... ===" headers are not command
    # lines
    sources = [p for p in _rst_files() if p.name != "demo.rst"] + [
        p for p in _example_files() if p.suffix in YAML_SUFFIXES
    ]
    for path in sources:
        for cmd, rest in _commands(path.read_text(encoding="utf-8")):
            parsed = _parse_command(cmd, rest)
            if parsed is None:
                continue
            func, count, keywords = parsed
            checked += 1
            kind = "runner" if cmd == "salt-run" else "execution"
            problems += _check_call(
                kind, func, count, keywords, f"{path.relative_to(REPO)}: `{cmd} {rest.strip()}`"
            )
    assert not problems, "\n".join(problems)
    assert checked >= 20, f"only {checked} kvm commands found in the docs"


def test_the_command_parser():
    assert _parse_command("salt", "-G 'kvm:hypervisor:kvm' state.apply kvm") is None
    assert _parse_command("salt", "hv01 kvm.bridge_show br0") == ("bridge_show", 1, set())
    assert _parse_command("salt-call", "--out=json kvm.pool_show x") == ("pool_show", 1, set())
    assert _parse_command("salt-run", "kvm.snapshot tgt='*' vms='web-*' name=x  # a comment") == (
        "snapshot",
        0,
        {"tgt", "vms", "name"},
    )
    assert _parse_command("salt", "'*' --batch-size 10% kvm.pool_list") == ("pool_list", 0, set())
    assert not _check_call("execution", "bridge_show", 1, set())
    assert _check_call("execution", "bridge_show", 0, {"netns"})  # name missing
    assert _check_call("execution", "bridge_show", 1, {"nope"}) and _check_call(
        "execution", "no_such", 0, set()
    )
    assert not _check_call("execution", "bridge_show", 1, {"netns"})


# --- the sandbox: a pillar example applied for real ------------------------------------------


def _limited_parts():
    """Parts that may not be applicable here (decided at run time by :func:`docs_sandbox.limit`)."""
    return [
        pytest.param(path, part, id=f"{_rel(path)}::{part}")
        for path in PILLAR_FILES
        for part, spec in docs_sandbox.parts(_pillar(path)["kvm"])
        if docs_sandbox.maybe_limited(part, spec)
    ]


@pytest.fixture(scope="module")
def env(conn):
    found = docs_sandbox.Env(conn)
    try:
        yield found
    finally:
        found.close()


@pytest.mark.slow
@pytest.mark.parametrize("path", PILLAR_FILES, ids=_rel)
def test_pillar_example_applies_for_real(path, env):
    pillar = _pillar(path)
    if docs_sandbox.needs_ceph(pillar):
        env.need_ceph()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="kvt-docs-"))
    box = docs_sandbox.Sandbox(env, pillar, workdir)
    try:
        box.build()
        kvm = box.pillar["kvm"]
        applied = [k for k in ("bridges", "networks", "pools", "vms", "snapshots") if kvm.get(k)]
        if not applied:
            pytest.skip(
                f"nothing of {_rel(path)} can be applied here: "
                + "; ".join(f"{p}: {r}" for p, r in box.limits.items())
            )
        call = SaltCall(workdir / "salt", file_roots=[repo_file_root(workdir / "file-root")])
        full = dict(box.pillar)
        (call.pillar_dir / "kvm.sls").write_text(yaml.safe_dump(full, default_flow_style=False))
        before = box.lan.dump() if box.lan else None

        code, data, err = box.salt_call(call, "state.apply", "kvm")
        results = state_results(data)
        failed = {sid: ret["comment"] for sid, ret in results.items() if ret["result"] is not True}
        assert code == 0 and results and not failed, (
            f"first apply of {_rel(path)} failed: {failed or data}\n{err[-2000:]}"
        )
        assert changed(data), "the first apply changed nothing"
        if os.environ.get(
            "KVT_SHOW_CHANGES"
        ):  # to write the docs' "what you will see" from a real run
            print(json.dumps(changed(data), indent=1, default=str))
        for secret in docs_sandbox.secret_texts(full):
            assert secret not in json.dumps(data) and secret not in err, (
                "a pool secret shows in the state output"
            )

        code, data, err = box.salt_call(call, "state.apply", "kvm")
        again = changed(data)
        assert code == 0 and not again, (
            f"second apply of {_rel(path)} changed {again}\n{err[-2000:]}"
        )
        assert len(state_results(data)) == len(results)

        _check_host(box, kvm, before)
        _undo(box, call, kvm)
        for job, spec in (full.get("schedule") or {}).items():
            # what Salt's scheduler runs, run now: converged, so nothing changes
            code, data, err = box.salt_call(call, spec["function"], *(spec.get("args") or []))
            assert code == 0 and state_results(data) and not changed(data), (
                f"schedule:{job}: {data}\n{err[-2000:]}"
            )
    finally:
        box.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def _check_host(box, kvm, before):
    """The host as the pillar says (a few independent reads, beside the states' own verify)."""
    conn = box.conn
    pools = {p.name(): p for p in conn.listAllStoragePools(0)}
    for name, spec in (kvm.get("pools") or {}).items():
        if spec.get("absent"):
            assert name not in pools
            continue
        assert pools[name].isActive(), f"pool {name} is not running"
        vols = set(pools[name].listVolumes())
        for vname, vol in (spec.get("volumes") or {}).items():
            assert (vname in vols) != bool(vol.get("absent")), (
                f"volume {vname} of {name}: {sorted(vols)}"
            )
    nets = {n.name(): n for n in conn.listAllNetworks(0)}
    for name, spec in (kvm.get("networks") or {}).items():
        assert (name in nets) != bool(spec.get("absent"))
    import libvirt  # pylint: disable=import-outside-toplevel

    for vm, spec in (kvm.get("vms") or {}).items():
        want = "absent" if spec.get("absent") else spec.get("state", "running")
        try:
            dom = conn.lookupByName(vm)
        except libvirt.libvirtError:
            dom = None
        have = (
            "absent" if dom is None else {1: "running", 3: "paused"}.get(dom.info()[0], "stopped")
        )
        assert have == want, f"VM {vm} is {have}, not {want}"
    for vm, spec in (kvm.get("snapshots") or {}).items():
        names = conn.lookupByName(vm).snapshotListNames(0)
        assert [n for n in names if n.startswith(spec.get("prefix", "auto-"))], (
            f"{vm}: no snapshot taken ({names})"
        )
    if box.lan:
        dump = box.lan.dump()
        for name, spec in (kvm.get("bridges") or {}).items():
            links = [link[0] for link in dump["links"]]
            assert (name in links) != bool(spec.get("absent")), f"bridge {name}: {links}"
        assert dump != before
        if any(
            not s.get("absent")
            and box.lan.nic
            in [p if isinstance(p, str) else p["name"] for p in docs_sandbox.bridge_ports(s)]
            for s in kvm["bridges"].values()
        ):
            # the uplink moved: the host still reaches its gateway, through the bridge
            assert not [
                a for a in dump["addresses"] if a[0] == box.lan.nic and not a[1].startswith("fe80")
            ]
            assert (
                box.lan.run("ping", "-c", "1", "-W", "2", box.lan.gateway, check=False).returncode
                == 0
            )
    if any(
        (s.get("persist") or "none") != "none" and not s.get("absent")
        for s in (kvm.get("bridges") or {}).values()
    ):
        written = [p for copy_dir in box.etc.values() for p in copy_dir.rglob("*salt-kvm*")]
        assert written, f"persist wrote nothing under the private copies of {sorted(box.etc)}"


def _undo(box, call, kvm):
    """The how-tos' ad hoc undo: VMs removed (their volumes kept), networks stopped and
    undefined, bridges deleted (``force=True``: they carry the host's address), pools undefined."""
    steps = [
        ("kvm.vm_undefine", name)
        for name, spec in (kvm.get("vms") or {}).items()
        if not spec.get("absent")
    ]
    for name, spec in (kvm.get("networks") or {}).items():
        if not spec.get("absent"):
            steps += [("kvm.network_stop", name), ("kvm.network_undefine", name)]
    for name, spec in (kvm.get("bridges") or {}).items():
        if not spec.get("absent"):
            steps.append(("kvm.bridge_delete", name, "force=True"))
    for name, spec in (kvm.get("pools") or {}).items():
        if not spec.get("absent"):
            steps += [("kvm.pool_stop", name), ("kvm.pool_undefine", name)]
    for step in steps:
        code, data, err = box.salt_call(call, *step)
        assert code == 0, f"{' '.join(step)}: {data}\n{err[-1000:]}"
    if box.lan:
        links = [link[0] for link in box.lan.dump()["links"]]
        assert not set(kvm.get("bridges") or {}) & set(links)
    left = {p.name() for p in box.conn.listAllStoragePools(0)} | {
        n.name() for n in box.conn.listAllNetworks(0)
    }
    assert not (set(kvm.get("pools") or {}) | set(kvm.get("networks") or {})) & left


@pytest.mark.parametrize("path,part", _limited_parts())
def test_pillar_example_part_beyond_this_host(path, part, env, kvm):
    """A part this host may not run: its pool is still defined and undefined in libvirt
    (libvirt validates it); then the test skips with the reason when the part cannot run."""
    pillar = _pillar(path)
    spec = dict(docs_sandbox.parts(pillar["kvm"]))[part]
    if spec.get("type") == "rbd":
        env.need_ceph()
    reason = docs_sandbox.limit(part, spec, env)
    if part.startswith("pools:") and not part.endswith(":volumes") and not spec.get("absent"):
        from tests.support.storage_servers import backend_missing  # pylint: disable=import-outside-toplevel

        missing = backend_missing(env.conn, spec["type"])
        if missing:
            pytest.skip(missing)
        box = docs_sandbox.Sandbox(env, pillar, tempfile.mkdtemp(prefix="kvt-docs-"))
        name = box.name("pool", part.split(":")[1], "p")
        try:
            defined = box.pool_spec(name, spec, real=False)
            defined.pop("volumes", None)
            for key in ("autostart", "build", "force"):
                defined.pop(key, None)
            shown = kvm.pool_define(name, **defined)
            assert shown["type"] == spec["type"] and shown["state"] == "inactive"
            for secret in docs_sandbox.secret_texts(pillar):
                assert secret not in repr(shown)
            kvm.pool_undefine(name)
            assert name not in kvm.pool_list()
        finally:
            box.remove()
            shutil.rmtree(box.workdir, ignore_errors=True)
    if reason:
        pytest.skip(f"{part} of {_rel(path)} not applied here: {reason}")


def test_every_example_file_is_run():
    """Nothing under docs/examples escapes the tests above."""
    files = _example_files()
    assert files
    for path in files:
        assert path in PILLAR_FILES or path in SLS_FILES or path in OTHER_FILES
    # anything else there (a picture, a script) is shown as it is, never a Salt example
    assert not [p for p in OTHER_FILES if p.suffix in (".sls",)], (
        "an SLS example that is neither pillar nor states"
    )
    assert any(p.suffix == ".sls" for p in SLS_FILES), "the orchestration example is an SLS file"
    assert base64.b64decode(
        _pillar(EXAMPLES / "howto-pool-ceph.sls")["kvm"]["pools"]["ceph-vms"]["source"]["auth"][
            "secret"
        ],
        validate=True,
    )
