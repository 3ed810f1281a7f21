"""``python -m vidact``: the ``vidact`` command, for environments without its console script."""

import sys

from vidact.cli.main import main

sys.exit(main())
