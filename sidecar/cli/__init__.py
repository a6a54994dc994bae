"""Presentation: the typer app, one module per command, and the tables and progress people see."""
