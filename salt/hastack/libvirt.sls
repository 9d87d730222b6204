{#- libvirt secrets holding Ceph keys, set through the libvirt API (never virsh argv). #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set libvirt = hastack.libvirt %}
{%- if hastack.clusters.values() | selectattr('is_admin_minion') | list %}
{#- A rotation updates the cluster first, then the secret. #}
include:
  - hastack.ceph.cluster
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
{%-   if secret.user_state %}
      - ceph_client: {{ secret.user_state }}
{%-   endif %}
{%- endfor %}
