"""benchmarks/gpu_run.sh's test stages: `tests` leaves the tests marked slow to `tests_slow` (the suite
outgrew the first stage's time limit), and the two together run every test."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytest_calls(tmp_path: Path, *stages: str) -> list[list[str]]:
    """The pytest argument lists gpu_run.sh passes for ``stages``, from a copy run with a stand-in python."""
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "benchmarks" / "gpu_run.sh").write_text((ROOT / "benchmarks" / "gpu_run.sh").read_text())
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(
        textwrap.dedent(
            f"""\
            #!/usr/bin/env bash
            [ "$1 $2" = "-m pytest" ] && printf '%q ' "${{@:3}}" >>{log} && echo >>{log} && echo "1 passed"
            exit 0
            """
        )
    )
    fake.chmod(0o755)
    env = {**os.environ, "PY": str(fake)}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(repo / "benchmarks" / "gpu_run.sh"), *stages], env=env, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [shlex.split(line) for line in log.read_text().splitlines()]


def marker_expression(args: list[str]) -> str:
    return args[args.index("-m") + 1]


def collected(expression: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-m", expression, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {line for line in proc.stdout.splitlines() if "::" in line}


def test_the_tests_stage_leaves_the_slow_tests_to_tests_slow(tmp_path: Path) -> None:
    fast, slow = pytest_calls(tmp_path, "tests", "tests_slow")
    assert marker_expression(fast) == "not slow" and marker_expression(slow) == "slow"
    assert fast[0] == slow[0] == "tests"
    selected = collected("slow")
    # The AOTInductor compiles (and the C++ runner build) and the 4 GiB tensors are among them.
    for name in ("test_aoti_cuda_cpp_runner", "test_aoti_cuda_every_half_value", "test_more_than_2_31_elements_cuda"):
        assert any(f"::{name}" in test for test in selected), name
    assert selected.isdisjoint(collected("not slow"))
