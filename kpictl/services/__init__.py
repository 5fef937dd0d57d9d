"""The service layer: plain functions over a SQLAlchemy connection, callable from Python.

A service takes a connection (or engine) and plain arguments, returns plain data, and never
prints, exits or touches Typer.
"""
