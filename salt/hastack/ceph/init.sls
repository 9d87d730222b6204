{#- Ceph: cluster-side objects on each cluster's admin minion, client files where roles
    need them. #}
{%- from "hastack/map.jinja" import hastack with context %}
include:
{%- if hastack.clusters.values() | selectattr('is_admin_minion') | list %}
  - hastack.ceph.cluster
{%- endif %}
  - hastack.ceph.client
