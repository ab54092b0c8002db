"""CLI commands beyond classify/tokenize/inspect, one module each, registered at the bottom of cli.py."""
