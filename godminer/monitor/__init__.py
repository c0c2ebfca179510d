"""Monitoring: what the dashboard, /metrics and the alerts read, and the alert rules."""
