"""Keeping a database healthy: retention, doctor, the demo."""
