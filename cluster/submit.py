"""Submit a batch-embed job to a Ray cluster through Ray's job submission API, and follow it.

The project's code (`jobs/`, `operators/`, `cluster/`) and the job's config travel in
the job's `runtime_env` working_dir, so the cluster runs exactly the code and config
of the laptop or scheduler that submitted it; the cluster's image only needs the
dependencies (`pip install "batch-embed[gpu]"`). The entrypoint is the same CLI a
user runs locally: `python -m jobs.cli <job> --config job.yaml [--set ...]`.

Credentials never travel with the job: the cluster's nodes take them from their
environment or instance roles. The job server's own token (Ray's token authentication,
on by default for a head with a dashboard since Ray 2.60) is found as Ray's CLI finds
it, `RAY_AUTH_TOKEN`, `--token-file`, `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`,
and sent as a bearer header, so the user need not also export `RAY_AUTH_MODE=token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobs", "operators", "cluster")
STAGED_CONFIG = "job.yaml"
DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def default_address() -> str:
    return os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_JOB_ADDRESS") or DEFAULT_ADDRESS


def entrypoint(job: str, overrides: list[str]) -> str:
    """The command the cluster runs: the job's own CLI on the staged config."""
    args = ["python", "-m", "jobs.cli", job, "--config", STAGED_CONFIG]
    for item in overrides:
        args += ["--set", item]
    return shlex.join(args)


def stage(config: Path) -> Path:
    """A working_dir holding the project's packages and the config (nothing else: no data, no venv)."""
    folder = Path(tempfile.mkdtemp(prefix="batch-embed-submit-"))
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(config, folder / STAGED_CONFIG)
    return folder


class AuthError(RuntimeError):
    """The job server wants a token we do not have, or refused the one we sent (one line, no traceback)."""


def token_sources(token_file: str | None = None) -> list[tuple[str, Path | None]]:
    """Where the job server's token is looked for, first match wins: (what to tell the user, file or None)."""
    sources: list[tuple[str, Path | None]] = [("RAY_AUTH_TOKEN", None)]
    if token_file:
        sources.append((f"--token-file {token_file}", Path(token_file).expanduser()))
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        sources.append((f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})",
                        Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()))
    default = Path.home() / ".ray" / "auth_token"
    sources.append((str(default), default))
    return sources


def find_token(token_file: str | None = None) -> tuple[str | None, str]:
    """(token or None, where it came from / where it was looked for)."""
    sources = list(token_sources(token_file))
    for where, path in sources:
        value = os.environ.get("RAY_AUTH_TOKEN", "") if path is None else (
            path.read_text().strip() if path.is_file() else "")
        if value.strip():
            return value.strip(), where
    return None, ", ".join(where for where, _ in sources)


@contextlib.contextmanager
def job_server(address: str | None, token_file: str | None = None) -> Iterator[Any]:
    """A JobSubmissionClient carrying the token, if one is found; Ray's AuthenticationError (28 lines of
    traceback) comes out as one AuthError line naming where the token was looked for."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    token, where = find_token(token_file)
    at = address or default_address()
    try:
        yield JobSubmissionClient(at, headers={"Authorization": f"Bearer {token}"} if token else None)
    except AuthenticationError:
        if token is None:
            raise AuthError(f"the job server at {at} requires a token (Ray token authentication); none found in "
                            f"{where}. Copy the head's ~/.ray/auth_token here or pass --token-file") from None
        raise AuthError(f"the job server at {at} refused the token from {where}; use the head's "
                        "~/.ray/auth_token") from None


def new_submission_id(job: str) -> str:
    return f"batch-embed-{job}-{uuid.uuid4().hex[:10]}"


def submit(job: str, config: Path, overrides: list[str], address: str | None, submission_id: str,
           token_file: str | None = None) -> str:
    """Stage the code and `config`, and submit `batch-embed <job>` on them; returns the submission id.

    The config is checked by the caller (jobs/submit), which knows the jobs; this module knows
    only the command line and Ray's job API."""
    folder = stage(config)
    try:
        runtime_env: dict[str, Any] = {
            "working_dir": str(folder),
            # Engine logs at WARNING; the job's own progress and summary are what users follow.
            "env_vars": {"VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"},
        }
        with job_server(address, token_file) as c:
            c.submit_job(
                entrypoint=entrypoint(job, overrides),
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata={"batch_embed_job": job, "config": config.name},
                # The driver only plans and commits: no GPU for it, the engines get them.
                entrypoint_num_cpus=0.5,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # uploaded by submit_job
    return submission_id


async def _tail(c: Any, job_id: str, out) -> None:
    async for lines in c.tail_job_logs(job_id):
        out.write(lines)
        out.flush()


def follow(job_id: str, address: str | None, out=sys.stdout, token_file: str | None = None) -> int:
    """Stream the job's logs until it ends; returns its exit status (0 when it succeeded)."""
    with job_server(address, token_file) as c:
        asyncio.run(_tail(c, job_id, out))
        return exit_status(c, job_id)


def exit_status(c: Any, job_id: str) -> int:
    from ray.job_submission import JobStatus

    info = c.get_job_info(job_id)
    if info.status == JobStatus.SUCCEEDED:
        return 0
    code = getattr(info, "driver_exit_code", None)
    return int(code) if code else 1


def status(job_id: str, address: str | None, token_file: str | None = None) -> tuple[str, str]:
    with job_server(address, token_file) as c:
        info = c.get_job_info(job_id)
    return str(info.status.value if hasattr(info.status, "value") else info.status), info.message or ""


def logs(job_id: str, address: str | None, token_file: str | None = None) -> str:
    with job_server(address, token_file) as c:
        return c.get_job_logs(job_id)
