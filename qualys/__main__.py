"""Entry point for ``python -m qualys``."""

import sys

from qualys.cli import main

sys.exit(main())
