{#- Ceph: cluster-side objects on each cluster's admin minion, client files where roles
    need them. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
include:
{%- if hastack.clusters.values() | selectattr('is_admin_minion') | list %}
  - .cluster
{%- endif %}
  - .client
