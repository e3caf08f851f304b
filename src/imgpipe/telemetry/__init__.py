"""Logs and metrics: what operators see. Stdlib and prometheus-client only."""
