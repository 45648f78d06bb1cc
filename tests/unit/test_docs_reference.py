"""The reference parts of the docs cannot drift from the code.

* Every key of the ``kvm`` pillar schema has a description (``schema.describe``)
  and appears in the pillar reference that docs/_ext/kvm_pillar_reference.py
  generates into docs/pillar.rst.
* Every public function of the loader modules has a docstring, every execution
  function a ``CLI Example:``, and each appears in the reference built by
  Sphinx (autodoc of docs/reference/*.rst).
"""

import ast
import os
import re
import subprocess
import sys

import pytest

from salt_kvm import bridge_attrs, network_modes, pool_types, schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))

import kvm_pillar_reference as ref  # noqa: E402  # pylint: disable=wrong-import-position

#: loader module file -> the name docs/conf.py imports it under for autodoc
LOADER_MODULES = {
    "_modules/kvm.py": ("kvm_execution_module", "reference/execution.html"),
    "_states/kvm.py": ("kvm_state_module", "reference/states.html"),
    "_runners/kvm.py": ("kvm_runner_module", "reference/runner.html"),
    "_grains/kvm.py": ("kvm_grains_module", "reference/grains.html"),
}


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _records(field, path, seen=None):
    """Every record reachable from ``field`` with its path: walked here independently
    of the extension, so a field kind the extension forgets to descend into still fails."""
    if isinstance(field, schema.Record):
        yield field, path
        for key, sub in field.fields.items():
            yield from _records(sub, f"{path}:{key}")
    elif isinstance(field, schema.Map):
        yield from _records(field.value, f"{path}:<name>")
        yield from _records(field.key, f"{path}:<name>")
    elif isinstance(field, schema.Ports):
        yield from _records(schema.PORT, f"{path}:<i>")
    elif isinstance(field, schema.List):
        yield from _records(field.item, f"{path}:<i>")


def _placeholders(path):
    return re.sub(r"<[a-z]+>", "<name>", path)


def test_every_schema_key_has_a_description():
    missing = []
    for record, path in _records(schema.PILLAR, "kvm"):
        for key in record.fields:
            text = record.docs.get(key, "")
            if not isinstance(text, str) or len(text.strip()) < 10:
                missing.append(f"{path}:{key}")
    assert not missing, (
        "schema keys without a description (add them with schema.describe): " + ", ".join(missing)
    )


def test_descriptions_name_only_known_keys():
    for record, _path in _records(schema.PILLAR, "kvm"):
        assert set(record.docs) <= set(record.fields)
        assert set(record.defaults) <= set(record.fields)


def test_every_schema_key_is_in_the_generated_reference():
    text = "\n".join(ref.render())
    generated = {_placeholders(e.path) for e in ref.entries()}
    for record, path in _records(schema.PILLAR, "kvm"):
        for key in record.fields:
            assert _placeholders(f"{path}:{key}") in generated, (
                f"{path}:{key} is not in the pillar reference"
            )
    for entry in ref.entries():
        assert f"``{entry.path}``" in text
        assert entry.description and entry.description in text
    for ptype in schema.POOL_TYPES:
        assert f"``{ptype}``" in text


def test_every_field_kind_has_a_type_in_the_reference():
    for entry in ref.entries():
        ftype, allowed = ref.describe_type(entry.field)
        assert ftype != "any" and allowed, (
            f"{entry.path}: {type(entry.field).__name__} has no type text in the extension"
        )


def test_pillar_page_uses_the_generated_reference():
    text = _read(os.path.join(ROOT, "docs", "pillar.rst"))
    assert ".. kvm-pillar-reference::" in text
    assert "literalinclude:: ../pillar.example" in text
    conf = _read(os.path.join(ROOT, "docs", "conf.py"))
    assert '"kvm_pillar_reference"' in conf


def _public_functions(relpath):
    tree = ast.parse(_read(os.path.join(ROOT, relpath)))
    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]


@pytest.mark.parametrize("relpath", sorted(LOADER_MODULES))
def test_every_public_function_has_a_docstring(relpath):
    funcs = _public_functions(relpath)
    assert funcs, relpath
    undocumented = [f.name for f in funcs if len((ast.get_docstring(f) or "").strip()) < 10]
    assert not undocumented, f"{relpath}: no docstring: {undocumented}"


def test_every_execution_function_has_a_cli_example():
    lacking = []
    for func in _public_functions("_modules/kvm.py"):
        doc = ast.get_docstring(func) or ""
        example = doc.split("CLI Example:", 1)[1] if "CLI Example:" in doc else ""
        if "salt" not in example or f"kvm.{func.name}" not in example:
            lacking.append(func.name)
    assert not lacking, (
        f"execution functions whose docstring lacks a 'CLI Example:' calling kvm.<name>: {lacking}"
    )


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("docs-html")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            os.path.join(ROOT, "docs"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.mark.parametrize("relpath", sorted(LOADER_MODULES))
def test_every_public_function_is_in_the_built_reference(built_docs, relpath):
    alias, page = LOADER_MODULES[relpath]
    html = (built_docs / page).read_text(encoding="utf-8")
    missing = [f.name for f in _public_functions(relpath) if f'id="{alias}.{f.name}"' not in html]
    assert not missing, f"{relpath}: not in {page}: {missing}"


def test_every_pillar_key_is_in_the_built_pillar_page(built_docs):
    html = (built_docs / "pillar.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">")
    missing = [e.path for e in ref.entries() if e.path not in text]
    assert not missing, f"not in the built pillar page: {missing}"


#: loader function -> the table whose every row its docstring lists (the tables are the truth;
#: a row added without the docstring fails here)
DOCSTRING_TABLES = {
    ("_states/kvm.py", "bridge_present"): bridge_attrs.KEYS,
    ("_modules/kvm.py", "bridge_show"): bridge_attrs.KEYS,
    ("_states/kvm.py", "network_present"): network_modes.NAMES,
    ("_modules/kvm.py", "network_define"): network_modes.NAMES,
    ("_modules/kvm.py", "pool_define"): pool_types.NAMES,
}


@pytest.mark.parametrize("where", sorted(DOCSTRING_TABLES), ids="/".join)
def test_state_docstrings_list_every_row_of_the_tables(where):
    relpath, name = where
    funcs = {f.name: f for f in _public_functions(relpath)}
    doc = re.sub(r"\s+", " ", ast.get_docstring(funcs[name]) or "")
    missing = [row for row in DOCSTRING_TABLES[where] if not re.search(rf"\b{row}\b", doc)]
    assert not missing, f"{relpath} {name}: the docstring does not list {missing}"
