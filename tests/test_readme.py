import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_first_example():
    assert len(python_blocks()) >= 1


@pytest.mark.heavy
def test_readme_first_example_runs(tmp_path):
    # The example as a reader copies it, run in a fresh process and an
    # empty directory, so that its relative paths land there.
    script = tmp_path / "example.py"
    script.write_text(python_blocks()[0])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2] == "True"
    for name in (
        "saved_model",
        "model.tflite",
        "model.onnx",
        "report.json",
        "manifest.json",
    ):
        assert (tmp_path / "out" / "resnet20" / name).exists()
