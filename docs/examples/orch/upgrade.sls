# Orchestration: snapshot every VM of a role, upgrade them, revert if the upgrade fails.
#
#   salt-run state.orchestrate docs.examples.orch.upgrade \
#       pillar='{"upgrade": {"vms": "db-*", "sls": "upgrade.db"}}'
#
# (with this repository as a file root; copy it to your own state tree as orch/upgrade.sls
# and run `salt-run state.orchestrate orch.upgrade pillar=...`)
#
# pillar `upgrade` (given on the command line):
#   vms:        VM names or glob patterns of the role       (default: db-*)
#   hosts:      the hypervisors that run them (compound)    (default: G@kvm:hypervisor:kvm)
#   snapshot:   the snapshot's name                         (default: pre-upgrade)
#   guests:     the minions to upgrade (the VMs' own minions) (default: the vms pattern)
#   guests_tgt_type:                                        (default: glob)
#   sls:        the upgrade to apply to them                (default: upgrade)
#   batch:      hypervisors at a time for snapshot/revert   (default: 10%)
{%- set up = salt["pillar.get"]("upgrade", {}) %}
{%- set vms = up.get("vms", "db-*") %}
{%- set hosts = up.get("hosts", "G@kvm:hypervisor:kvm") %}
{%- set snapshot = up.get("snapshot", "pre-upgrade") %}
{%- set batch = up.get("batch", "10%") %}

# 1. a snapshot of every VM of the role, on every hypervisor, 10% of them at a time;
#    a VM that already has it (a re-run) is left alone; any failure stops here
snapshot-before-upgrade:
  salt.runner:
    - name: kvm.snapshot
    - tgt: "{{ hosts }}"
    - tgt_type: compound
    - vms: "{{ vms }}"
    - snapshot: "{{ snapshot }}"
    - batch: "{{ batch }}"

# 2. the upgrade itself, on the guests
upgrade:
  salt.state:
    - tgt: "{{ up.get('guests', vms) }}"
    - tgt_type: {{ up.get("guests_tgt_type", "glob") }}
    - sls: {{ up.get("sls", "upgrade") }}
    - require:
      - salt: snapshot-before-upgrade

# 3. only if the upgrade failed (and the snapshots were taken): every VM of the role back
revert-on-failure:
  salt.runner:
    - name: kvm.revert
    - tgt: "{{ hosts }}"
    - tgt_type: compound
    - vms: "{{ vms }}"
    - snapshot: "{{ snapshot }}"
    - batch: "{{ batch }}"
    - require:
      - salt: snapshot-before-upgrade   # never revert to a snapshot this run did not take
    - onfail:
      - salt: upgrade
