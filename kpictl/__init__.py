"""kpictl: KPIs for code factories, computed inside PostgreSQL."""

__version__ = "0.1.0"
