{#- Floating IPs by name, as declared in hastack:floating_ips:addresses. #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- for label, fip in hastack.floating_ips.addresses | dictsort %}

hastack-floating-ip-{{ label }}:
{%-   if fip.get('absent') %}
  floating_ip.absent:
    - address: {{ fip.address }}
    - release: {{ fip.get('release', False) }}
{%-   else %}
  floating_ip.associated:
{%-     for arg in ('server', 'port', 'fixed_ip', 'address', 'network', 'standby') %}
{%-       if fip.get(arg) %}
    - {{ arg }}: {{ fip[arg] | json }}
{%-       endif %}
{%-     endfor %}
{%-   endif %}
{%- endfor %}
