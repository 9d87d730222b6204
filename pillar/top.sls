# The workshop's 3-node cloud, targeted by minion id: alice and bob run the control
# plane and compute, charlie is compute only. alice holds client.admin.
base:
  '*':
    - hastack.common
    - hastack.pacemaker
    - hastack.openstack
  alice:
    - hastack.nodes.alice
  bob:
    - hastack.nodes.bob
  charlie:
    - hastack.nodes.charlie
