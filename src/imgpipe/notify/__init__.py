"""Webhooks out: Standard Webhooks signatures, egress checks, and the HTTP sender."""
