{#- Salt's floor: an event -> the reactor -> an orchestration -> a no-op on a minion. #}
hastack-bench-floor:
  runner.state.orchestrate:
    - args:
      - mods: hastack_bench.floor_orch
      - pillar:
          round: {{ data.get('round', 0) | json }}
