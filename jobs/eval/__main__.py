"""`python -m jobs.eval --config FILE [--out ...] [--dims ...] [--rerank]`: the same as `batch-embed eval`."""

import sys

from jobs.core.command import main_for
from jobs.eval import job

sys.exit(main_for("batch-embed eval", job.__doc__, job.add_arguments, job.run_from_args))
