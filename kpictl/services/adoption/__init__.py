"""Adopting a live AFU-9 database in place."""
