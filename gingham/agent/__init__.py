"""The node daemon: the CNI socket, the reconcile loop, metrics."""
