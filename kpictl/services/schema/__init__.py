"""kpictl's schema: migrations (upgrade, downgrade, repair) and the schema gate."""
