"""The CNI protocol: spec types, the plugin skeleton, the runtime side."""
