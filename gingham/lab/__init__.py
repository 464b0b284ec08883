"""The lab: nodes and pods as network namespaces, workloads that answer probes."""
