{#- Floating IPs by name, as declared in hastack:floating_ips:addresses. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('floating_ips', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.floating_ips), it still honours the roles. #}
{%- for label, fip in hastack.floating_ips.addresses | dictsort %}

hastack-floating-ip-{{ label }}:
{%-   if fip.get('absent') %}
  floating_ip.absent:
{%-     for arg in ('address', 'server', 'port', 'fixed_ip') %}
{%-       if fip.get(arg) %}
    - {{ arg }}: {{ fip[arg] | json }}
{%-       endif %}
{%-     endfor %}
    - release: {{ fip.get('release', False) }}
{%-   else %}
  floating_ip.associated:
{%-     for arg in ('server', 'port', 'fixed_ip', 'address', 'network', 'standby') %}
{%-       if fip.get(arg) %}
    - {{ arg }}: {{ fip[arg] | json }}
{%-       endif %}
{%-     endfor %}
{%-   endif %}
    - pillar_key: {{ fip.pillar_key }}
{%- endfor %}
{%- else %}

hastack-floating-ips-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.floating_ips does not apply to this minion: hastack:floating_ips is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:floating_ips:roles
{%- endif %}
