"""Routing without encapsulation: BGP between the nodes and to routers outside, with BIRD 2."""
