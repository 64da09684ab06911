"""What pip installs: the wheel's packages and commands, the TensorFlow
extras, and the errors at import when TensorFlow or its backend is
missing."""

import os
import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
         "-w", str(directory), "-q"],
        check=True, capture_output=True, text=True,
    )
    return zipfile.ZipFile(next(directory.glob("kerasrnn-*.whl")))


def test_wheel_holds_only_project_named_packages_and_the_commands(wheel):
    names = wheel.namelist()
    top_level = {name.split("/")[0] for name in names
                 if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"kerasrnn", "kerasrnn_serving"}
    assert "kerasrnn/export/cli.py" in names
    entry_points = wheel.read(next(
        n for n in names if n.endswith("entry_points.txt"))).decode()
    for command, target in [
        ("kerasrnn-to-onnx", "kerasrnn.export.cli:onnx_main"),
        ("kerasrnn-to-saved-model", "kerasrnn.export.cli:saved_model_main"),
        ("kerasrnn-serving", "kerasrnn_serving.__main__:main"),
    ]:
        assert f"{command} = {target}" in entry_points


def test_cpu_and_gpu_extras_install_one_tensorflow_distribution():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    names = {extra: {Requirement(r).name for r in extras[extra]
                     if Requirement(r).name.startswith("tensorflow")}
             for extra in ("cpu", "gpu")}
    assert names["cpu"] == names["gpu"] == {"tensorflow"}


def run_python(code, **environment):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, **environment}, cwd=ROOT,
    )


def test_import_without_tensorflow_names_the_install_command():
    completed = run_python(
        "import sys; sys.modules['tensorflow'] = None; import kerasrnn")
    assert completed.returncode != 0
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: kerasrnn runs on Keras' "
                           "'tensorflow' backend here, and tensorflow is not "
                           "installed")
    assert 'pip install "kerasrnn[cpu]"' in last


def test_import_on_an_unsupported_backend_is_refused_with_the_backend_named():
    completed = run_python("import kerasrnn", KERAS_BACKEND="numpy")
    assert completed.returncode != 0
    last = completed.stderr.strip().splitlines()[-1]
    assert "Keras is set to 'numpy'" in last
    assert "('tensorflow', 'jax', 'torch')" in last


def test_import_on_torch_needs_no_tensorflow():
    completed = run_python(
        "import sys; sys.modules['tensorflow'] = None; import kerasrnn; "
        "print(kerasrnn.LSTM(2)(__import__('numpy').zeros((1, 3, 2), "
        "'float32')).shape)", KERAS_BACKEND="torch")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "[1, 2]" in completed.stdout


def test_serving_imports_without_tensorflow():
    completed = run_python(
        "import sys; sys.modules['tensorflow'] = None; "
        "import kerasrnn_serving; print('ok')")
    assert completed.returncode == 0, completed.stderr[-2000:]
