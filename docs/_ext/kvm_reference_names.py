"""Reference entries named as users call them: ``kvm.host_info``, not
``kvm_execution_module.host_info``.

docs/conf.py imports each loader module file under a unique name
(``kvm_execution_module``, ``kvm_state_module``, ...) so autodoc can document
four modules that Salt all calls ``kvm``; this extension shows that name,
``kvm.``, in front of every function of those modules (the link targets keep
the unique names, so nothing collides).
"""

from sphinx import addnodes

#: the names docs/conf.py loads the loader modules under
ALIASES = ("kvm_execution_module", "kvm_state_module", "kvm_runner_module", "kvm_grains_module")


def _rename(app, doctree):  # pylint: disable=unused-argument
    for node in doctree.findall(addnodes.desc_addname):
        text = node.astext()
        if text.rstrip(".") in ALIASES:
            node.children = []
            node += addnodes.desc_sig_name("kvm.", "kvm.")
            # no arguments: "kvm.host_info", not "kvm.host_info()"
            for params in node.parent.findall(addnodes.desc_parameterlist):
                if not params.children:
                    params.parent.remove(params)


def setup(app):
    app.connect("doctree-read", _rename)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
