"""`kpictl jobs` (not built yet)."""

import typer

app = typer.Typer()
