"""``hammer`` subcommands of the training module (registered in ``server.cli.COMMANDS``)."""
