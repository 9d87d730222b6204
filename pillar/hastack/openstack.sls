# The OpenStack API hastack talks to, and the floating IPs it keeps associated.
# cloud: a clouds.yaml entry (or openstacksdk connection arguments as a mapping).
hastack:
  openstack:
    cloud: admin
    external_network: ext_net
  floating_ips:
    roles: [controller]
    addresses:
      # The recipe's UUID chase, by name: web1 gets an address from ext_net.
      web1:
        server: web1
        # Where `salt-call floating_ip.move web1` sends it when web1 fails.
        standby:
          server: web1-standby
      # A fixed address for the database's port.
      db1:
        port: db1-port
        address: 192.168.144.50
