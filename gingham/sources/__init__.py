"""Where cluster state comes from: etcd (list + watch into a typed, indexed cache; leases)."""
