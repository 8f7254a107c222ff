"""scripts/: the Jetson first-boot script's plan (dry run: it changes nothing here, no Jetson exists), and the
system-package list the README's test command installs."""

import os
import subprocess

from support.daemon import REPO


def test_the_jetson_setup_dry_run_prints_every_step_in_order_and_touches_nothing(tmp_path):
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", "jetson-setup.sh"), "--dry-run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                            env=dict(os.environ, FIREDETD_PREFIX=str(tmp_path / "opt")))
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    steps = [line for line in out.splitlines() if line.startswith("== ")]
    assert [s.split()[1] for s in steps] == ["%d/8" % i for i in range(1, 9)]
    assert "python3 -m venv --system-site-packages" in out and "python3-libnvinfer" in out
    assert "build-engine" in out and out.index("build-engine") < out.index("systemctl enable --now firedetd")
    assert not (tmp_path / "opt").exists()


def test_the_jetson_setup_refuses_a_machine_without_jetpack():
    if os.path.exists("/etc/nv_tegra_release"):
        return   # a real Jetson: the refusal cannot be shown here
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", "jetson-setup.sh")], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, timeout=60)
    assert result.returncode == 2 and b"not a Jetson" in result.stderr


def test_system_packages_lists_what_the_tests_need():
    out = subprocess.run(["bash", os.path.join(REPO, "scripts", "system-packages.sh"), "--list"],
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode().split()
    for package in ("gir1.2-gst-rtsp-server-1.0", "mosquitto", "chromium-driver", "prometheus", "openssl"):
        assert package in out
