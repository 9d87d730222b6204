{#- libvirt secrets holding Ceph keys, set through the libvirt API (never virsh argv). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('libvirt', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.libvirt), it still honours the roles. #}
{%- set libvirt = hastack.libvirt %}
{%- if hastack.clusters.values() | selectattr('is_admin_minion') | list %}
{#- A rotation updates the cluster first, then the secret. #}
include:
  - {{ tplroot }}.ceph.cluster
{%- endif %}

{#- Before anything else in the run: libvirt answers and no usage name is taken, or
    the run stops here (failhard) with nothing changed. #}
hastack-libvirt-preflight:
  libvirt_secret.usable:
    - name: libvirt secrets
    - secrets:
{%- for uuid, secret in libvirt.secrets | dictsort %}
        {{ uuid }}: {usage: {{ secret.usage | json }}, replace_usage: {{ secret.replace_usage }}}
{%- endfor %}
    - uri: {{ libvirt.uri | json }}
    - order: 1
    - failhard: True
{%- for uuid, secret in libvirt.secrets | dictsort %}

hastack-libvirt-secret-{{ uuid }}:
  libvirt_secret.present:
    - name: {{ uuid }}
    - ceph_user: {{ secret.ceph_user }}
    - usage: {{ secret.usage | json }}
    - key_pillar: {{ secret.key_pillar }}
    - uri: {{ libvirt.uri | json }}
    - replace_usage: {{ secret.replace_usage }}
    - require:
      - libvirt_secret: hastack-libvirt-preflight
{%-   if secret.admin_here %}
      - ceph_client: {{ ceph_id(secret.cluster, 'user', secret.ceph_user) }}
{%-   endif %}
{%- endfor %}
{%- else %}

hastack-libvirt-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.libvirt does not apply to this minion: hastack:libvirt is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:libvirt:roles
{%- endif %}
