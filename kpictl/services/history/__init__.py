"""The per-tenant KPI history: tenants, fill, export, grants."""
