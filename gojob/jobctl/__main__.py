"""``python -m gojob.jobctl``: the same as the ``jobctl`` script."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
