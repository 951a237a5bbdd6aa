"""``python -m hvmspec``: the same as the ``hvmspec`` command."""

import sys

from hvmspec.cli import main

sys.exit(main())
