"""Network driver ``bridge``: a Linux bridge per network, veth pairs, nftables for the rest."""
