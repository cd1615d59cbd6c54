"""Prometheus probes chaostoolkit-prometheus lacks (see `chaos.prometheus.probes`)."""
