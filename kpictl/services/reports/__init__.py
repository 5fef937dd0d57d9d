"""Read-only reports over kpictl's tables: latest KPI values, freshness."""
