"""The README's two commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", Path("README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_commands():
    setup_and_demo, tests = readme_commands()
    ci = Path(".ci/run").read_text().splitlines()
    assert f"{setup_and_demo} || exit 1" in ci  # run exactly, and a failed setup stops CI
    assert tests in ci
    assert setup_and_demo.startswith("bash .ci/setup && ")
    assert "configs/demo.yaml" in setup_and_demo
