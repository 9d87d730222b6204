{#- Cinder volumes on Ceph RBD: one section per backend (release's names), and
    CEPH_ARGS=--id <user> for cinder-volume. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('cinder', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.cinder), it still honours the roles. #}
{%- set cinder = hastack.cinder %}
include:
  - .ceph.client

hastack-cinder-conf:
  hastack.ini_present:
    - name: {{ cinder.config_file }}
    - sections: {{ cinder.settings | json }}
    - require:
      - sls: {{ tplroot }}.ceph.client
{%- if cinder.ceph_args_user %}

hastack-cinder-ceph-args:
  file.managed:
{%-   if cinder.release == 'folsom' %}
    {#- The workshop's Ubuntu ran cinder-volume under upstart. #}
    - name: {{ cinder.upstart_dir }}/{{ cinder.service.name }}.override
    - contents: 'env CEPH_ARGS="--id {{ cinder.ceph_args_user }}"'
{%-   else %}
    - name: {{ cinder.systemd_dir }}/{{ cinder.service.name }}.service.d/hastack-ceph.conf
    - contents: |
        # Managed by hastack: the Ceph id for the ceph/rbd commands cinder-volume runs.
        [Service]
        Environment=CEPH_ARGS=--id {{ cinder.ceph_args_user }}
{%-   endif %}
    - makedirs: True
    - mode: '0644'
{%-   if cinder.release != 'folsom' and grains.get('init') == 'systemd' %}

hastack-cinder-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: hastack-cinder-ceph-args
{%-   endif %}
{%- endif %}
{%- if cinder.service.manage %}

hastack-cinder-service:
  service.running:
    - name: {{ cinder.service.name }}
    - enable: True
    - watch:
      - hastack: hastack-cinder-conf
{%-   if cinder.ceph_args_user %}
      - file: hastack-cinder-ceph-args
{%-   endif %}
{%-   for cluster, user in cinder.keyrings %}
      - ceph_client: {{ ceph_id(cluster, 'keyring', user) }}
{%-   endfor %}
{%- endif %}
{%- else %}

hastack-cinder-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.cinder does not apply to this minion: hastack:cinder is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:cinder:roles
{%- endif %}
