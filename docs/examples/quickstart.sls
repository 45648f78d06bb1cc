# Quickstart pillar (docs/quickstart.rst): one directory pool with a volume,
# and a NAT network for the VMs. Put it in your pillar as kvm.sls and assign
# it to the hypervisor in the pillar top file.
kvm:
  networks:
    lab:
      mode: nat
      bridge: virbr10
      address: 198.51.100.193/26
      dhcp:
        start: 198.51.100.200
        end: 198.51.100.250
      autostart: true
  pools:
    images:
      type: dir
      target: /srv/kvm/images
      autostart: true
      volumes:
        test01.qcow2: {size: 2G, format: qcow2}
