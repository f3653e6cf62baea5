"""`python -m flows.cli`: the `sentiflow` command."""

import sys

from flows.cli import main

sys.exit(main())
