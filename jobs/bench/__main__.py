"""`python -m jobs.bench [--rows N] [--only ...]`: the same as `batch-embed bench`."""

import sys

from jobs.bench import job
from jobs.core.command import main_for

sys.exit(main_for("batch-embed bench", job.__doc__, job.add_arguments, job.run_from_args))
