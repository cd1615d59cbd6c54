"""Istio HTTP fault injection on VirtualServices: `actions` (set/unset faults) and `probes` (read them)."""
