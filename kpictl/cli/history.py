"""`kpictl history` (not built yet)."""

import typer

app = typer.Typer()
