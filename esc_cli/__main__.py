"""``python -m esc_cli ...`` is ``esc-env ...``."""

import sys

from .app import main

sys.exit(main())
