"""``python -m memory_implementations.cli``: same as the ``memory-orchestrator`` script."""

import sys

from . import main

sys.exit(main())
