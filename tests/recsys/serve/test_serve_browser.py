"""The page at / in a real headless Chromium (system chromium + chromium-driver, via Selenium).

Skipped with a reason where no browser is installed (`apt-get install chromium chromium-driver`).
Screenshots go to pytest's temporary folder, or to $SERVE_SCREENSHOT_DIR when set (the committed
benchmarks/results/serve/page*.png were made with SERVE_SCREENSHOT_DIR=benchmarks/results/serve).
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="no system chromium/chromedriver (apt-get install chromium "
                                       "chromium-driver)")


@pytest.fixture(scope="module")
def base_url(served, tmp_path_factory):
    import uvicorn

    from recsys.serve import create_app

    root = served["root"]
    app = create_app(root / "index", root / "ranker", device="cpu",
                     feedback_log=tmp_path_factory.mktemp("fb") / "fb.csv")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start in 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    yield d
    d.quit()


def _cards(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def test_search_toggle_and_recommend_in_a_browser(base_url, driver, served, tmp_path):
    SHOT = Path(os.environ.get("SERVE_SCREENSHOT_DIR") or tmp_path) / "page.png"
    wait = WebDriverWait(driver, 20)
    driver.get(base_url + "/")
    box = wait.until(EC.presence_of_element_located((By.ID, "q")))
    box.send_keys(served["catalog"].caption.iloc[0])
    driver.find_element(By.ID, "go").click()
    wait.until(lambda d: len(_cards(d)) == 9)
    # thumbnails load (naturalWidth > 0 only after a decoded JPEG)
    wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                             for img in d.find_elements(By.CSS_SELECTOR, "#results img.thumb")))
    assert "confidence 0." in driver.find_element(By.ID, "status").text
    ids = [c.get_attribute("data-video-id") for c in _cards(driver)]
    assert "syn-0" in ids
    badge = driver.find_element(By.CSS_SELECTOR, ".card.synthetic .badge")
    assert badge.text == "synthetic"
    assert "montage" in driver.find_element(By.CSS_SELECTOR, ".card.synthetic .prov").text
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOT))

    driver.find_element(By.ID, "hide-synthetic").click()
    wait.until(lambda d: len(_cards(d)) == 8)
    assert not driver.find_elements(By.CSS_SELECTOR, ".card.synthetic")

    Select(driver.find_element(By.ID, "user")).select_by_value("u0")
    wait.until(lambda d: "Recommendations for user u0" in d.find_element(By.ID, "title").text)
    first = _cards(driver)[0]
    assert first.get_attribute("data-video-id") == served["catalog"].video_id.iloc[0]
    assert "ease #1" in first.find_element(By.CSS_SELECTOR, ".sources").text
    driver.save_screenshot(str(SHOT.with_name("page_recommend.png")))
    assert SHOT.stat().st_size > 10_000
