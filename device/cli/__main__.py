"""``python -m deepkeys.device.cli``: the same entry point as the ``deepkeys`` script."""

import sys

from deepkeys.device.cli import main

sys.exit(main())
