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


def test_the_demo_names_its_pages_plays_until_ctrl_c_and_stops_cleanly(tmp_path):
    import signal
    import sys
    import threading
    import time

    import requests
    from support.daemon import free_port

    metrics_addr = "127.0.0.1:%d" % free_port()
    # the venv running this test stands in for the one demo.sh would create (SKIP_SETUP: no pip run here)
    env = dict(os.environ, SKIP_SETUP="1", VENV=os.path.dirname(os.path.dirname(sys.executable)),
               PORT=str(free_port()), METRICS_ADDR=metrics_addr, PYTHONUNBUFFERED="1")
    demo = subprocess.Popen(["bash", os.path.join(REPO, "scripts", "demo.sh"), "--state-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(line.decode() for line in demo.stdout), daemon=True)
    reader.start()
    try:
        deadline, page = time.time() + 90, None
        while time.time() < deadline and demo.poll() is None:
            if page is None or page.status_code != 200:
                try:
                    page = requests.get("http://%s/" % metrics_addr, timeout=2)
                except requests.RequestException:
                    pass
            if page is not None and page.status_code == 200 and any(" raised score=" in x for x in lines):
                break
            time.sleep(0.5)
        assert demo.poll() is None, "".join(lines)   # still playing: a 30 s sample at its own rate, looped
        os.killpg(demo.pid, signal.SIGINT)             # what Ctrl-C sends to the terminal's foreground group
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    reader.join(5)
    out = "".join(lines)
    assert page is not None and page.status_code == 200, out
    assert "status page http://%s/" % metrics_addr in out and "metrics http://%s/metrics" % metrics_addr in out
    assert "sample smoke raised" in out or "sample fire raised" in out   # the receiver printed the alert
    assert "stop requested" in out and "firedetd stopped" in out and "end of stream" not in out
