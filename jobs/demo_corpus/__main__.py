"""`python -m jobs.demo_corpus [--out DIR]`: the same as `batch-embed demo-corpus`."""

import sys

from jobs.core.command import main_for
from jobs.demo_corpus import job

sys.exit(main_for("batch-embed demo-corpus", job.__doc__, job.add_arguments, job.run_from_args))
