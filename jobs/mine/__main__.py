"""`python -m jobs.mine --config FILE [--set KEY=VALUE ...]`: the same as `batch-embed mine`."""

import sys

from jobs.core.command import main_for
from jobs.mine import job

sys.exit(main_for("batch-embed mine", job.__doc__, job.add_arguments, job.run_from_args))
