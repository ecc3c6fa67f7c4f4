"""``python -m topojax`` runs the command line."""

import sys

from topojax.cli import main

sys.exit(main())
