"""A real browser for the report tests: headless Chromium from the OS packages.

`.ci/run` installs Debian's `chromium-headless-shell`; on a developer machine without
it the browser tests skip (in CI, where `CI` is set, they fail instead: a report nobody
opened in a browser is not checked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

_BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
          "--no-first-run", "--disable-extensions", "--disable-background-networking"]


def chromium() -> str:
    for name in _BINARIES:
        path = shutil.which(name)
        if path:
            return path
    message = "no headless Chromium (apt-get install chromium-headless-shell)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def open_page(html: Path, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """Load `html` (file://) in headless Chromium: (the DOM after scripts ran, console messages)."""
    args = [chromium(), *_FLAGS, f"--user-data-dir={html.parent / '.chromium'}"]
    if screenshot is not None:
        shot = subprocess.run([*args, f"--screenshot={screenshot}", "--window-size=1360,1400",
                               html.resolve().as_uri()], capture_output=True, text=True, timeout=120)
        assert shot.returncode == 0, shot.stderr[-2000:]
    run = subprocess.run([*args, "--dump-dom", html.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    # Chromium logs every console message of the page (console.error, uncaught exceptions,
    # failed loads) as `...:CONSOLE:<line>] "<message>", source: ...` on stderr.
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console
