{#- Glance on Ceph RBD: the store options in glance-api.conf (release's names). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('glance', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.glance), it still honours the roles. #}
{%- set glance = hastack.glance %}
include:
  - .ceph.client

hastack-glance-conf:
  hastack.ini_present:
    - name: {{ glance.config_file }}
    - sections: {{ glance.settings | json }}
    - require:
      - sls: {{ tplroot }}.ceph.client
{%- if glance.service.manage %}

hastack-glance-service:
  service.running:
    - name: {{ glance.service.name }}
    - enable: True
    - watch:
      - hastack: hastack-glance-conf
      - ceph_client: {{ ceph_id(glance.cluster, 'keyring', glance.user) }}
{%- endif %}
{%- else %}

hastack-glance-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.glance does not apply to this minion: hastack:glance is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:glance:roles
{%- endif %}
