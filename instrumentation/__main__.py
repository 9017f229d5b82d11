"""``python -m llmlens`` is the ``llmlens`` command."""

import sys

from llmlens._cli import main

sys.exit(main())
