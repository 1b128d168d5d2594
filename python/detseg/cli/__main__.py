"""`python -m detseg.cli ...` == the `detseg` command (handy from a source tree)."""

import sys

from .main import main

sys.exit(main())
