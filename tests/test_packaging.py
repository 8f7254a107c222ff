"""A plain `pip install .` (a wheel, not editable) works from any directory: the shipped model, its spec and the
sample video travel in the wheel (installed to <prefix>/share/firedetd) and `firedetd run` finds them.

The wheel is built for real (flit) and installed for real into a fresh venv with --no-deps; the dependencies
(numpy, ONNX Runtime, OpenCV...) are borrowed from the test run's own environment through a .pth file, which
puts them after the fresh venv's site-packages: the firedetd that runs is the installed wheel, and the test
checks that it is."""

import glob
import os
import subprocess
import sys
import sysconfig

import pytest
from support.daemon import REPO, free_port


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    if sys.version_info < (3, 8):
        pytest.skip("the wheel is built and checked on the development Python (3.11); 3.6 installs the same files")
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(work / "dist"), REPO], check=True, timeout=300)
    wheel = glob.glob(str(work / "dist" / "firedetd-*.whl"))[0]
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    with open(os.path.join(site, "borrowed-dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel],
                   check=True, timeout=300)
    return venv, wheel


def test_the_wheel_carries_the_model_and_the_sample(installed_wheel):
    import zipfile

    _, wheel = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    for part in ("share/firedetd/engines/firedetd.json", "share/firedetd/engines/firedetd.onnx",
                 "share/firedetd/engines/firedetd-int8.onnx", "share/firedetd/samples/furg_house6.mp4"):
        assert any(name.endswith(".data/data/" + part) for name in names), part


def test_firedetd_installed_from_the_wheel_runs_from_another_directory(installed_wheel, tmp_path):
    venv, _ = installed_wheel
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import firedetd, firedetd.paths as p; print(firedetd.__file__); "
                            "print(p.default_spec_path()); print(p.sample_video_path())"],
                           cwd=str(tmp_path), stdout=subprocess.PIPE, check=True).stdout.decode().split()
    assert all(path.startswith(str(venv)) for path in where), where   # the wheel's files, not the checkout's
    result = subprocess.run([str(venv / "bin" / "firedetd"), "run", "--max-frames", "50", "--state-dir",
                             str(tmp_path / "state"), "--metrics-addr", "127.0.0.1:%d" % free_port()],
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    log = result.stderr.decode()
    assert result.returncode == 0, log
    assert "--max-frames 50 reached" in log and "sample" in log
