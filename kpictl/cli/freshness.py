"""`kpictl freshness` (not built yet)."""

import typer

app = typer.Typer()
