{#- The whole of hastack for this minion, chosen by its roles and pillar. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
include:
  - .ceph
{%- for service in ('cephfs', 'computes', 'glance', 'cinder', 'nova', 'libvirt', 'pacemaker', 'floating_ips', 'failover') %}
{%-   if hastack.get(service, {}).get('applies') %}
  - .{{ service }}
{%-   endif %}
{%- endfor %}
