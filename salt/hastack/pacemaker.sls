{#- The control plane's Pacemaker configuration, as declared in hastack:pacemaker. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('pacemaker', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.pacemaker), it still honours the roles. #}
{%- set pcmk = hastack.pacemaker %}

hastack-pacemaker:
  pacemaker.configured:
    - name: {{ hastack.site }}
    - config: {{ pcmk.config | json }}
    - nodes: {{ pcmk.nodes | json }}
    - remove_undeclared: {{ pcmk.remove_undeclared }}
{%- if pcmk.cib_file %}
    - cib_file: {{ pcmk.cib_file }}
{%- endif %}
{%- else %}

hastack-pacemaker-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.pacemaker does not apply to this minion: hastack:pacemaker is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:pacemaker:roles
{%- endif %}
