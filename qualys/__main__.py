"""Entry point for ``python -m qualys``."""

import sys

from qualys.cli.main import main

sys.exit(main())
