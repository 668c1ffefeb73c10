"""`python -m jobs.rerank --config FILE [--set KEY=VALUE ...]`: the same as `batch-embed rerank`."""

import sys

from jobs.core.command import main_for
from jobs.rerank import job

sys.exit(main_for("batch-embed rerank", job.__doc__, job.add_arguments, job.run_from_args))
