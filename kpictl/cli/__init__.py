"""The command line: a thin Typer layer over `kpictl.services` (one module per command group)."""
