"""The only package that touches the kernel: netns, links, routes, nft, sysctl, tc."""
