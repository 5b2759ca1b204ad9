"""``python -m metagen_utils {train,evaluate,sample}`` — see :mod:`metagen_utils.cli`."""
import sys

from .cli import main

sys.exit(main())
