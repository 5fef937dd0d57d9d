"""`kpictl kpis` (not built yet)."""

import typer

app = typer.Typer()
