"""``python -m prunegym.agents ...``: the ``prunegym`` command line."""

import sys

from .cli import main

sys.exit(main())
