{#- Ceph: cluster-side objects on the admin minion, client files where roles need them. #}
{%- from "hastack/map.jinja" import hastack with context %}
include:
{%- if hastack.ceph.is_admin_minion %}
  - hastack.ceph.cluster
{%- endif %}
  - hastack.ceph.client
