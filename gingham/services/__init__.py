"""Services + EndpointSlices -> nftables, the way kube-proxy's nftables mode does it."""
