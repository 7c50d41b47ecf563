"""``python -m seqpack``: the command line (see :mod:`seqpack.cli`)."""

import sys

from seqpack.cli import main

if __name__ == "__main__":
    sys.exit(main())
