"""NetworkPolicy: the pure reachability evaluator (with reasons) and the nftables compiler."""
