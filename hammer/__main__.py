"""``python -m hammer`` runs the ``hammer`` console script."""

import sys

from hammer.cli import main

sys.exit(main())
