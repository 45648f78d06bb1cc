#!py
# kvm.storage: rendered from the kvm pillar by salt_kvm.formula (the whole pillar is
# validated first; a bad value fails the run before anything changes).


def run():
    return __salt__["kvm.render_formula"]("storage", __pillar__.get("kvm"), fail_state=True)
