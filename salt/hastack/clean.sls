{#- Removes, per concern, what hastack created on this minion and the pillar no longer
    names. Never part of a highstate: apply it on purpose (test=True first). #}
include:
  - .ceph.clean
  - .libvirt.clean
