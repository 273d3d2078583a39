"""Subcommands of the ``hammer`` console script."""
