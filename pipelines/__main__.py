"""`python -m forecaster_pipelines ...` is the `forecaster` command."""

import sys

from .cli import main

sys.exit(main())
