{#- The whole of hastack for this minion, chosen by its roles and pillar. #}
{%- from "hastack/map.jinja" import hastack with context %}
include:
  - hastack.ceph
