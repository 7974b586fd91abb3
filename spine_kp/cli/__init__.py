"""Command-line interface: thin argument parsing around the library. Nothing imports this package."""
