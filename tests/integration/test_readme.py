"""The README's Python example runs as written against a real cluster, and earns tokens."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from canistry.up import Cluster

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_example_passes_a_quiz_and_earns(shared_cluster: Cluster) -> None:
    snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert snippet is not None, "the README has a Python example"
    code = snippet.group(1).replace("http://127.0.0.1:8080", shared_cluster.gateway_url)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    passed, reward, balance = lines[1].split()
    assert passed == "True" and int(reward) > 0 and int(balance) == int(reward), lines
