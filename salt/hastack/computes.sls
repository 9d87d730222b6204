{#- The compute identities this node may run (the workshop's nova-compute host=hostN):
    one nova-compute-<identity>.conf each with its host=, and in nova.conf the shared
    instances_path and, for mode identity, resume_guests_state_on_host_boot. Pacemaker
    starts and moves the identities (hastack.pacemaker declares their primitives). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack with context %}
{%- if hastack.get('computes', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.computes), it still honours the roles. #}
{%- set computes = hastack.computes %}
{%- set shared = hastack.get('cephfs', {}).get('mounts', {}).get(computes.instances_path, {}) %}
{%- if shared.get('applies') %}
include:
  - .cephfs
{%- endif %}
{%- for directory in computes.dirs %}

hastack-computes-dir-{{ directory }}:
  file.directory:
    - name: {{ directory }}
    - makedirs: True
{%- endfor %}

hastack-computes-nova-conf:
  hastack.ini_present:
    - name: {{ computes.config_file }}
    - sections: {{ computes.settings | json }}
    - require:
      - file: hastack-computes-dir-{{ computes.config_file.rsplit('/', 1)[0] or '/' }}
{%- if shared.get('applies') %}
      - ceph_client: hastack-cephfs-mount-{{ computes.instances_path }}
{%- endif %}
{%- for identity in computes.here %}

hastack-computes-identity-{{ identity }}:
  hastack.ini_present:
    - name: {{ computes.identities[identity].conf }}
    - sections:
        DEFAULT:
          host: {{ identity }}
    - require:
      - file: hastack-computes-dir-{{ computes.conf_dir }}
{%- endfor %}
{%- else %}

hastack-computes-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.computes does not apply to this minion: hastack:computes is not in
        its pillar, none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:computes:roles, or no identity may run on it
{%- endif %}
