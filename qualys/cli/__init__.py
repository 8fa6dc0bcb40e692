"""The command line: ``python -m qualys sync | validate | demo``."""
