"""The TypeScript client's and the sample web app's tests, run from the suite.

``npm test`` (clients/typescript) checks ``@canistry/client`` against a real
``canistry up`` and against the Python client (same principal, same
signature); ``npm run test:browser`` drives examples/web in headless Chromium
from another origin, so CORS is real, and leaves screenshots in
``clients/typescript/test-artifacts/`` (or ``$CANISTRY_ARTIFACTS``). CI
installs Node packages (``npm ci``) and Chromium first; without them these
skip and say what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "clients" / "typescript"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def _npm() -> str:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("Node.js 20+ and npm are needed (apt-get install nodejs npm)")
    major = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if int(major.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"Node.js 20+ is needed, found {major.strip()}")
    if not (PACKAGE / "node_modules").is_dir():
        pytest.skip("run `npm ci` in clients/typescript first (CI does)")
    return npm


def _run(npm: str, script: str, **env: str) -> None:
    # The clusters the tests start run this checkout's code with this interpreter.
    environ = {**os.environ, "PYTHON": sys.executable, **env}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [npm, "run", script], cwd=PACKAGE, env=environ, capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout, result.stdout[-3000:]


def test_typescript_client_against_a_real_cluster_and_the_python_client() -> None:
    _run(_npm(), "test")


def test_web_app_in_headless_chromium_from_another_origin(tmp_path: Path) -> None:
    npm = _npm()
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    artifacts = Path(os.environ.get("CANISTRY_ARTIFACTS", PACKAGE / "test-artifacts"))
    for shot in ("learner.png", "operator.png"):
        (artifacts / shot).unlink(missing_ok=True)
    _run(npm, "test:browser", CANISTRY_ARTIFACTS=str(artifacts), CHROMIUM=str(CHROMIUM))
    for shot in ("learner.png", "operator.png"):
        assert (artifacts / shot).stat().st_size > 10_000, f"no screenshot {shot}"
