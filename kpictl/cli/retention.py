"""`kpictl retention` (not built yet)."""

import typer

app = typer.Typer()
