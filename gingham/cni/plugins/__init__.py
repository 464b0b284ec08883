"""The gingham CNI plugins, each config-compatible with its reference namesake."""
