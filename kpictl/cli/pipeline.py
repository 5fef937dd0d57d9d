"""`kpictl pipeline` (not built yet)."""

import typer

app = typer.Typer()
