"""Headless Chromium driven through chromedriver by Selenium (3.141 on Python 3.6, 4.x on 3.8+), for page tests."""

import shutil

import cv2
import numpy as np
import pytest

# as root Chromium needs --no-sandbox; the rest keeps it off the network (tests talk to 127.0.0.1 only) and
# off /dev/shm, which is small in containers
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--no-first-run", "--disable-quic",
                  "--hide-scrollbars", "--mute-audio")


def headless_chromium(user_data_dir, width=1280, height=1000):
    """A WebDriver on a fresh headless Chromium profile; skips the test when chromium, chromedriver or selenium
    is missing (apt-get install chromium chromium-driver; pip install the `test` extra)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + ("--window-size=%d,%d" % (width, height), "--user-data-dir=%s" % user_data_dir):
        options.add_argument(flag)
    try:
        from selenium.webdriver.chrome.service import Service

        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    except TypeError:  # selenium 3 (the last for Python 3.6) takes the driver path directly
        driver = webdriver.Chrome(executable_path=chromedriver, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def element_image(driver, css):
    """A screenshot of the first element matching `css`, as a BGR array."""
    png = driver.find_element("css selector", css).screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def mean_difference(a, b):
    """Mean absolute pixel difference of two images (0 when their sizes differ: a layout change is not new content)."""
    if a is None or b is None or a.shape != b.shape:
        return 0.0
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def emulate_phone(driver, width=390, height=844):
    """Lay the page out as a phone of this size would (viewport meta honoured): headless Chromium will not make its
    window narrower than 500 px, so the width comes from the DevTools protocol instead."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})


def emulate_desktop(driver, width=1280, height=1000):
    """Back to an ordinary window of this size after emulate_phone."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.set_window_size(width, height)
