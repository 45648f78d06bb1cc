# Pillar for one hypervisor (docs/howto/bridge-nic.rst): put its NIC eno1 on
# the bridge br0, keeping the address, the default route and the MAC that eno1
# had; a probe checks the gateway and rolls everything back if it fails;
# persist writes the host's own network configuration so br0 survives a reboot.
kvm:
  bridges:
    br0:
      ports: [eno1]
      stp: false
      forward_delay: 0
      persist: auto
      probe:
        ping: 192.0.2.1
        timeout: 20s
  networks:
    lan:
      mode: bridge
      bridge: br0
      autostart: true
