"""`kpictl demo` (not built yet)."""

import typer

app = typer.Typer()
