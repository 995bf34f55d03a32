"""The report in a real headless Chromium (Debian packages chromium and chromium-driver; `.ci/run` installs them):
it renders its images and tables, escaped names show as text, a header click sorts, the console stays clean."""
from __future__ import annotations

import shutil

import cv2
import pytest

from coseg.report.build import build_report
from tests.report.report_runs import AWKWARD_GROUPS, evaluation_folder

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", "--allow-file-access-from-files"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_report_renders_in_chromium(tmp_path, browser):
    folder = evaluation_folder(tmp_path)
    result = build_report(folder, per_group=2, thumbnail=64, progress=False)
    browser.get(result.path.as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert len(images) == 2 + 3 * 2 * 3
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"images that did not load: {broken}"
    headings = browser.execute_script("return Array.from(document.querySelectorAll('h3')).map(h => h.textContent)")
    assert set(AWKWARD_GROUPS) <= set(headings)  # escaped names show as the names, no markup or script ran
    assert browser.execute_script("return document.querySelectorAll('h3 b, h3 script').length") == 0
    rows = browser.execute_script("return document.querySelectorAll('#s2-images tbody tr').length")
    assert rows == 9 and browser.execute_script("return document.querySelectorAll('table').length") == 4

    def column(index):
        return browser.execute_script("return Array.from(document.querySelectorAll('#s2-images tbody tr'))"
                                      f".map(r => r.cells[{index}].textContent)")

    worst_first = [float(v) for v in column(3)]
    assert worst_first == sorted(worst_first)
    header = browser.find_elements("css selector", "#s2-images th")[2]  # P
    header.click()
    assert [float(v) for v in column(2)] == sorted(float(v) for v in column(2))
    header.click()
    assert [float(v) for v in column(2)] == sorted((float(v) for v in column(2)), reverse=True)

    shot = tmp_path / "screenshot.png"
    assert browser.save_screenshot(str(shot))
    picture = cv2.imread(str(shot))
    assert picture.shape[0] > 500 and picture.shape[1] > 800
    assert picture.std() > 20 and (picture < 128).mean() > 0.005  # text and plots, not a blank page
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert len({src for src, _, _ in images}) == len(images)  # one file per thumbnail
