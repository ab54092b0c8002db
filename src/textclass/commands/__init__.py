"""CLI commands beyond the core ones in cli.py, one module each (registered at the bottom of cli.py)."""
