"""Node subnets -> the routes, VXLAN neighbours and FDB entries that make the pod network flat."""
