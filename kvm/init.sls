#!py
# salt '*' state.apply kvm: bridges, then libvirt networks, then storage pools
# and volumes, then VMs, then snapshot retention, all from the kvm pillar (pillar.example).
# The whole pillar is validated here first: a bad one is one failed state
# (kvm-pillar) listing every error, and nothing is included, so nothing changes;
# a minion without a kvm pillar gets one state saying so.


def run():
    return __salt__["kvm.render_formula"]("init", __pillar__.get("kvm"), fail_state=True)
