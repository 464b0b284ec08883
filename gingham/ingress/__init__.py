"""The ingress controller: Ingresses (and Gateway API routes) compiled to an HAProxy configuration."""
