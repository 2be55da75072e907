"""`hrm-data view` in a real browser: headless Chromium driven by selenium.

Skips (with the reason) where Chromium, its driver or selenium is missing; .ci/run installs them.
"""
import os
import shutil
import tempfile

import numpy as np
import pytest

from hrm_data.format import Dataset
from hrm_data.predictions import predictions_table, write_predictions
from hrm_data.render_html import write_page

from test_pictures import make_grid_dataset

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
DRIVER = shutil.which("chromedriver")


def _driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
    if not CHROMIUM or not DRIVER:
        pytest.skip("Chromium or chromedriver not found (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
              "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)


def test_viewer_in_headless_chromium(tmp_path):
    ds = Dataset(make_grid_dataset(tmp_path / "d", n_test=10))
    arr = ds.test.set("all")
    preds = np.asarray(arr.labels).copy()
    wrong = np.array([1, 4, 5, 8])
    preds[wrong, 0] = (preds[wrong, 0] % 4) + 1     # a different token in the first cell
    assert (preds[wrong, 0] != np.asarray(arr.labels)[wrong, 0]).all()
    write_predictions(predictions_table(ds, {"all": preds}), tmp_path)
    from hrm_data.predictions import read_predictions
    page = write_page(ds, tmp_path / "view.html", read_predictions(tmp_path))

    driver = _driver(tmp_path)
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select
        driver.get(page.resolve().as_uri())
        info = driver.find_element(By.ID, "info")
        assert info.get_attribute("data-index") == "0"                     # first example shown
        assert "1 / 10" in driver.find_element(By.ID, "pos").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#panels canvas")) == 3
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        assert info.get_attribute("data-index") == "1"                     # next key: the second
        Select(driver.find_element(By.ID, "filter")).select_by_value("wrong")
        seen = []
        body = driver.find_element(By.TAG_NAME, "body")
        for _ in range(len(wrong) + 2):                                     # walk past the end
            seen.append(int(info.get_attribute("data-index")))
            assert info.get_attribute("data-correct") == "false"
            body.send_keys(Keys.ARROW_RIGHT)
        assert sorted(set(seen)) == wrong.tolist()                         # correct ones hidden
        assert f"1 / {len(wrong)}" not in driver.find_element(By.ID, "pos").text
        assert "4 wrong, 6 correct" in driver.find_element(By.ID, "counts").text
        shot = os.environ.get("HRM_VIEW_SCREENSHOT") or str(tmp_path / "view.png")
        driver.save_screenshot(shot)
        assert os.path.getsize(shot) > 1000
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
