"""`python -m jobs.embed --config FILE [--set KEY=VALUE ...]`: the same as `batch-embed embed`."""

import sys

from jobs.core.command import main_for
from jobs.embed import job

sys.exit(main_for("batch-embed embed", job.__doc__, job.add_arguments, job.run_from_args))
