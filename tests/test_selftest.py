"""The GPU self-check runs on the CPU from the source tree with only torch, torchvision, numpy and pandas."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent

#: what a bare GPU machine may lack: the video, progress, plotting, notebook and test stacks
BLOCKED = ("av", "tqdm", "matplotlib", "seaborn", "scipy", "sklearn", "papermill", "jupyter_book", "myst_nb",
           "nbformat", "IPython", "pytest")

RUN = textwrap.dedent(
    """
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # import raises ModuleNotFoundError, as when the package is not installed
    from cdlib.__main__ import main
    sys.exit(main(["selftest", "--device", "cpu", "--tiny"]))
    """
)


def test_tiny_selftest_passes_on_cpu_without_pyav_or_tqdm():
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "CDLIB_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-c", RUN.format(blocked=BLOCKED)], capture_output=True, text=True,
                          env=env, cwd=PROJECT, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-4000:]
    for step in ("environment", "models", "loader", "train", "benchmark", "distributed"):
        assert f"[PASS] {step}" in out, step
    assert "[SKIP] video" in out and "PyAV (av) is not importable" in out
    assert "self-check PASSED" in out
