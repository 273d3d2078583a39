"""hammer-server: the ``hammer`` CLI, the Hammer prompt format shared by serving and training, and
the ``hammer.server``, ``hammer.training`` and ``hammer.evaluation`` packages (kept in the
repository's ``server/``, ``training/`` and ``evaluation/`` folders; see pyproject.toml)."""
