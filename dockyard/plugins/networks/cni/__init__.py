"""Network driver ``cni``: any CNI network configuration list, run with the CNI plugins."""
