"""``hammer`` subcommands of the training module (registered in ``hammer.cli.COMMANDS``)."""
