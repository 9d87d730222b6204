# The workshop's Listing 2: the HA control plane as Pacemaker configuration.
# A VIP with MySQL and RabbitMQ, keystone, then glance, nova, quantum and cinder, each
# group colocated with and ordered after what it needs; the openvswitch agent cloned on
# every node; nova-compute-hostN preferring alice, bob and charlie (the workshop's
# whole-identity failover: hostN moves when its node dies).
hastack:
  pacemaker:
    nodes:
    - alice
    - bob
    - charlie
    properties:
      stonith-enabled: 'true'
      no-quorum-policy: stop
    resource_defaults:
      resource-stickiness: '100'
    primitives:
      p_IP:
        agent: ocf:heartbeat:IPaddr2
        ops:
          monitor:
            interval: 120s
            timeout: 60s
        params:
          ip: 192.168.122.130
          cidr_netmask: '24'
      p_mysql:
        agent: ocf:heartbeat:mysql
        ops:
          monitor:
            interval: 120s
            timeout: 60s
        params:
          config: /etc/mysql/my.cnf
          pid: /var/run/mysqld/mysqld.pid
          socket: /var/run/mysqld/mysqld.sock
      p_rabbitmq:
        agent: ocf:rabbitmq:rabbitmq-server
        ops:
          monitor:
            interval: 120s
            timeout: 60s
      p_keystone:
        agent: ocf:openstack:keystone
        ops:
          monitor:
            interval: 30s
            timeout: 30s
        params:
          config: /etc/keystone/keystone.conf
      p_glance-registry:
        agent: ocf:openstack:glance-registry
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_glance-api:
        agent: ocf:openstack:glance-api
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_nova-api:
        agent: ocf:openstack:nova-api
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_nova-cert:
        agent: ocf:openstack:nova-cert
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_nova-consoleauth:
        agent: ocf:openstack:nova-consoleauth
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_nova-scheduler:
        agent: ocf:openstack:nova-scheduler
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_nova-novnc:
        agent: ocf:openstack:nova-novnc
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_quantum-server:
        agent: ocf:openstack:quantum-server
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_quantum-agent-dhcp:
        agent: ocf:openstack:quantum-agent-dhcp
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_quantum-agent-l3:
        agent: ocf:openstack:quantum-agent-l3
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_quantum-agent-plugin-openvswitch:
        agent: ocf:openstack:quantum-agent-plugin-openvswitch
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_cinder-api:
        agent: ocf:openstack:cinder-api
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_cinder-schedule:
        agent: ocf:openstack:cinder-schedule
        ops:
          monitor:
            interval: 30s
            timeout: 30s
      p_nova-compute-host1:
        agent: ocf:openstack:nova-compute
        ops:
          monitor:
            interval: 30s
            timeout: 30s
        params:
          additional_parameters: --config-file=/etc/nova/nova-host1.conf
      p_nova-compute-host2:
        agent: ocf:openstack:nova-compute
        ops:
          monitor:
            interval: 30s
            timeout: 30s
        params:
          additional_parameters: --config-file=/etc/nova/nova-host2.conf
      p_nova-compute-host3:
        agent: ocf:openstack:nova-compute
        ops:
          monitor:
            interval: 30s
            timeout: 30s
        params:
          additional_parameters: --config-file=/etc/nova/nova-host3.conf
    groups:
      g_basic_services:
      - p_mysql
      - p_rabbitmq
      g_keystone:
      - p_keystone
      g_glance:
      - p_glance-registry
      - p_glance-api
      g_nova:
      - p_nova-api
      - p_nova-cert
      - p_nova-consoleauth
      - p_nova-scheduler
      - p_nova-novnc
      g_quantum:
      - p_quantum-server
      - p_quantum-agent-dhcp
      - p_quantum-agent-l3
      g_cinder:
      - p_cinder-api
      - p_cinder-schedule
    clones:
      cl_quantum-agent-plugin-openvswitch: p_quantum-agent-plugin-openvswitch
    locations:
      lo_host1_prefer_alice:
        rsc: p_nova-compute-host1
        node: alice
        score: 10000
      lo_host2_prefer_bob:
        rsc: p_nova-compute-host2
        node: bob
        score: 10000
      lo_host3_prefer_charlie:
        rsc: p_nova-compute-host3
        node: charlie
        score: 10000
    colocations:
      co_basic_services_with_IP:
        rsc: g_basic_services
        with_rsc: p_IP
        score: INFINITY
      co_keystone_with_IP:
        rsc: g_keystone
        with_rsc: p_IP
        score: INFINITY
      co_glance_with_keystone:
        rsc: g_glance
        with_rsc: g_keystone
        score: INFINITY
      co_nova_with_keystone:
        rsc: g_nova
        with_rsc: g_keystone
        score: INFINITY
      co_quantum_with_keystone:
        rsc: g_quantum
        with_rsc: g_keystone
        score: INFINITY
      co_cinder_with_keystone:
        rsc: g_cinder
        with_rsc: g_keystone
        score: INFINITY
    orders:
      o_IP_before_basic_services:
        first: p_IP
        then: g_basic_services
        kind: Mandatory
      o_basic_services_before_keystone:
        first: g_basic_services
        then: g_keystone
        kind: Mandatory
      o_keystone_before_glance:
        first: g_keystone
        then: g_glance
        kind: Mandatory
      o_keystone_before_nova:
        first: g_keystone
        then: g_nova
        kind: Mandatory
      o_keystone_before_quantum:
        first: g_keystone
        then: g_quantum
        kind: Mandatory
      o_keystone_before_cinder:
        first: g_keystone
        then: g_cinder
        kind: Mandatory
