"""The conventions of docs/development.rst, checked on the library's source.

A newcomer learns one module and knows the rest only if every module keeps
the same shape; these checks read the AST of ``salt_kvm/`` and name the place
that breaks a rule.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "salt_kvm"
SOURCES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _trees():
    for path in SOURCES:
        yield path.relative_to(ROOT.parent), ast.parse(path.read_text(), str(path))


def _public_functions(tree):
    """Module-level functions and methods of module-level classes, not starting with _."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if not item.name.startswith("_") or item.name == "__init__":
                        yield f"{node.name}.{item.name}", item


def _is_public(name):
    return not name.rsplit(".", 1)[-1].startswith("_") or name.endswith("__init__")


def test_public_functions_are_typed():
    missing = []
    for rel, tree in _trees():
        for name, func in _public_functions(tree):
            if not _is_public(name) or name.rsplit(".", 1)[-1] == "__getattr__":
                continue
            args = func.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            if "." in name and params and params[0].arg in ("self", "cls"):
                params = params[1:]
            untyped = [a.arg for a in params if a.annotation is None]
            if func.returns is None and not name.endswith("__init__"):
                untyped.append("return")
            if untyped:
                missing.append(f"{rel}:{func.lineno} {name}: {', '.join(untyped)}")
    assert not missing, "public functions without type hints:\n" + "\n".join(missing)


#: positional by design, with the reason
POSITIONAL = {
    "state_return": "Salt's own return dict, in its order: name, result, changes, comment",
    "InvalidInput.__init__": "an exception: (path, message), like every Exception's args",
}


def test_options_beyond_the_first_two_arguments_are_keyword_only():
    found = []
    for rel, tree in _trees():
        for name, func in _public_functions(tree):
            if not _is_public(name) or name in POSITIONAL:
                continue
            positional = [*func.args.posonlyargs, *func.args.args]
            if "." in name and positional and positional[0].arg in ("self", "cls"):
                positional = positional[1:]
            with_default = positional[len(positional) - len(func.args.defaults) :]
            late = [a.arg for i, a in enumerate(positional) if i >= 2 and a in with_default]
            if late:
                found.append(f"{rel}:{func.lineno} {name}: {', '.join(late)}")
    assert not found, "options that should be keyword-only (after *):\n" + "\n".join(found)


def _resource_classes(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(b, ast.Attribute) and b.attr == "Resource")
            or (isinstance(b, ast.Name) and b.id.endswith("Resource"))
            for b in node.bases
        ):
            yield node


def test_resources_are_named_and_keep_no_state():
    """``<Kind>Resource``, and no ``self.x = ...`` outside ``__init__`` (plan.py's contract)."""
    found = []
    for rel, tree in _trees():
        for cls in _resource_classes(tree):
            if not cls.name.endswith("Resource"):
                found.append(f"{rel}:{cls.lineno} class {cls.name}: name it <Kind>Resource")
            for func in cls.body:
                if not isinstance(func, ast.FunctionDef) or func.name == "__init__":
                    continue
                for node in ast.walk(func):
                    targets = []
                    if isinstance(node, ast.Assign):
                        targets = node.targets
                    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                        targets = [node.target]
                    for target in targets:
                        elts = target.elts if isinstance(target, ast.Tuple) else [target]
                        for sub in elts:
                            if (
                                isinstance(sub, ast.Attribute)
                                and isinstance(sub.value, ast.Name)
                                and sub.value.id == "self"
                            ):
                                found.append(
                                    f"{rel}:{node.lineno} {cls.name}.{func.name} "
                                    f"assigns self.{sub.attr}"
                                )
    assert not found, "\n".join(found)


def test_memo_keys_come_from_one_function():
    found = []
    for rel, tree in _trees():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "memo"
                and node.args
                and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp))
            ):
                found.append(f"{rel}:{node.lineno}")
    assert not found, "session.memo keys not made by conn.memo_key:\n" + "\n".join(found)


def _raw_libvirt_handlers(tree, lines):
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        names = ast.unparse(node.type)
        said = lines[node.lineno - 1] + (lines[node.lineno - 2] if node.lineno > 1 else "")
        if "libvirtError" in names and "# raw:" not in said:
            yield node.lineno, names


def test_libvirt_errors_go_through_conn():
    """``conn.libvirt_errors`` turns a libvirt error into our message; a handler that
    needs the raw error (its code) says why on its line or the line before:
    ``# raw: ...``."""
    found = []
    for rel, tree in _trees():
        if rel.name == "conn.py":
            continue
        lines = (ROOT.parent / rel).read_text().splitlines()
        found += [f"{rel}:{n} except {t}" for n, t in _raw_libvirt_handlers(tree, lines)]
    assert not found, "hand-rolled libvirt error handlers:\n" + "\n".join(found)


@pytest.mark.parametrize("rule", ["typed", "keyword-only", "resource", "memo", "libvirt"])
def test_each_rule_bites(rule, tmp_path):
    """Each check finds a planted violation (so a check that passes is not blind)."""
    bad = {
        "typed": "def f(a, b):\n    return a\n",
        "keyword-only": "def f(a: int, b: int, c: int = 1) -> int:\n    return a\n",
        "resource": "class Box(plan.Resource):\n    def plan(self, cur):\n        self.x = 1\n",
        "memo": "def f(s):\n    return s.memo('pools', load)\n",
        "libvirt": "try:\n    pass\nexcept libvirt.libvirtError:\n    pass\n",
    }[rule]
    tree = ast.parse(bad)
    if rule == "typed":
        name, func = next(_public_functions(tree))
        assert func.returns is None
    elif rule == "keyword-only":
        name, func = next(_public_functions(tree))
        assert func.args.defaults and not func.args.kwonlyargs
    elif rule == "resource":
        assert next(_resource_classes(tree)).name == "Box"
    elif rule == "memo":
        call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
        assert isinstance(call.args[0], ast.Constant)
    else:
        assert list(_raw_libvirt_handlers(tree, bad.splitlines()))


def test_every_library_package_is_shipped():
    """A package under ``salt_kvm/`` that setup.cfg does not list is missing from the
    wheel: the library imports it and every salt-call fails."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT.parent / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(ROOT.parent).parts)
        for p in ROOT.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"packages missing from setup.cfg: {sorted(found - listed)}"
