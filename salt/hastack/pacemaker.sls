{#- The control plane's Pacemaker configuration, as declared in hastack:pacemaker. #}
{%- from "hastack/map.jinja" import hastack with context %}
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
