"""The package's layers: imports only point down (cli → nodes → domain packages → graph → runtime
→ core → errors), checked by import-linter against the contracts in pyproject.toml; loading an
exported model imports neither torch nor the simulator."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


def test_imports_point_down_as_the_contracts_in_pyproject_say() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("module", ["fusion_stream.infer.backends", "fusion_stream.infer.tensorrt_backend"])
def test_loading_an_export_imports_neither_torch_nor_the_simulator(module: str) -> None:
    code = (
        f"import json, sys, {module}\n"
        "heavy = ('torch', 'fusion_stream.sim')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + '.' for h in heavy)))))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(run.stdout) == []
