{#- The whole of hastack for this minion, chosen by its roles and pillar. #}
{%- from "hastack/map.jinja" import hastack with context %}
include:
  - hastack.ceph
{%- for service in ('glance', 'cinder', 'nova', 'libvirt', 'pacemaker', 'floating_ips') %}
{%-   if hastack.get(service, {}).get('applies') %}
  - hastack.{{ service }}
{%-   endif %}
{%- endfor %}
