"""`python -m skipgan.cli ...`: the `skipgan` console script (torchrun starts it this way: `-m skipgan.cli`)."""

import sys

from . import main

sys.exit(main())
