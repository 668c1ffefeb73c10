"""`python -m jobs.maintain --config FILE [--set KEY=VALUE ...]`: the same as `batch-embed maintain`."""

import sys

from jobs.core.command import main_for
from jobs.maintain import job

sys.exit(main_for("batch-embed maintain", job.__doc__, job.add_arguments, job.run_from_args))
