"""Credentials never leave the process in anything it prints or writes.

Credentials should come from the environment or the AWS chain, but configs do
carry `key`/`secret` in `storage_options` sometimes. Every value that looks like
a credential (by its setting's or variable's name) is registered here at start;
the job's stdout and stderr (its own logs, errors, tracebacks and the Ray
worker output Ray forwards to the driver) and the summary file pass through
`redact`, and the config echo masks those settings by name.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, TextIO

MASK = "***"
# Setting / variable names whose values are credentials (matched case-insensitively as a whole word part).
_SECRET_NAME = re.compile(r"(^|_)(secret|token|password|passwd|credentials?|key|access_key_id|api_key)($|_)", re.I)
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
               "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RAY_AUTH_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY",
               "GOOGLE_APPLICATION_CREDENTIALS_JSON")
_MIN_LEN = 4  # shorter values would mask ordinary words

_known: set[str] = set()


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(str(name)))


def register(values: list[str] | set[str]) -> None:
    _known.update(v for v in values if isinstance(v, str) and len(v) >= _MIN_LEN)


def register_from(raw_config: Any, environ: dict[str, str] | None = None) -> None:
    """Credentials in a raw config (by setting name, at any depth) and in the environment."""
    env = os.environ if environ is None else environ
    register({env[k] for k in _SECRET_ENV if env.get(k)})

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                # a whole `storage_options` given as one string is a credential in the wrong place
                if (is_secret_name(k) or k == "storage_options") and isinstance(v, (str, int)):
                    register({str(v)})
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(raw_config)


def redact(text: str) -> str:
    for value in sorted(_known, key=len, reverse=True):  # longest first: a value inside another
        if value in text:
            text = text.replace(value, MASK)
    return text


def masked(node: Any) -> Any:
    """A copy of a config tree with every credential-named setting's value masked (the config echo)."""
    if isinstance(node, dict):
        return {k: (MASK if is_secret_name(k) and v not in (None, "") else masked(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [masked(v) for v in node]
    return redact(node) if isinstance(node, str) else node


class RedactingStream:
    """A text stream that masks registered credentials in everything written to it."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_std_streams() -> None:
    """Route this process's stdout/stderr through `redact` (idempotent); call before logging is set up."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
