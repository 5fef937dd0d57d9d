"""KPI pipeline: aggregate and backfill orchestration, the KPI SQL, hourly parts, periods."""
