"""A public status page in headless Chromium (selenium + chromium-driver).

Run by tests/api/status_page.rs:
    status_page_browser.py <page url> <expected JSON> <screenshot path>
The expected JSON: {"title": str, "urls": [{"id", "name", "state"}],
"open": [names], "resolved": [names]}. Checks the DOM (names, states, 90
bars with a tooltip each, the incident lists), that a phone-width window
does not scroll sideways, and that the browser logged no error; saves a
full-page screenshot. Prints one JSON line; exits non-zero on any failure.
"""

import json
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1100,900",
        # Nothing but the page under test: no network of its own.
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def main() -> None:
    url, expected, screenshot = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    driver = browser()
    try:
        driver.get(url)
        h1 = driver.find_element(By.TAG_NAME, "h1").text
        check(h1 == expected["title"], f"title {h1!r}")
        stylesheet_applied = driver.execute_script(
            "return getComputedStyle(document.querySelector('.url')).borderRadius"
        )
        check(stylesheet_applied == "6px", f"status.css not applied: {stylesheet_applied!r}")
        articles = driver.find_elements(By.CSS_SELECTOR, "article.url")
        check(len(articles) == len(expected["urls"]), f"{len(articles)} URLs shown")
        for want in expected["urls"]:
            article = driver.find_element(By.ID, f"url-{want['id']}")
            name = article.find_element(By.CSS_SELECTOR, ".url-name").text
            check(name == want["name"], f"name {name!r}, expected {want['name']!r}")
            state = article.get_attribute("data-state")
            check(state == want["state"], f"{name}: state {state!r}")
            bars = article.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar")
            check(len(bars) == 90, f"{name}: {len(bars)} bars")
            tips = driver.execute_script(
                "return Array.from(arguments[0].querySelectorAll('rect.bar > title'))"
                ".map(t => t.textContent)",
                article,
            )
            check(len(tips) == 90 and all(" uptime, " in t for t in tips), f"{name}: tooltips")
            shown = [e.text for e in article.find_elements(By.CSS_SELECTOR, ".figures dd")]
            check(len(shown) == 5 and all(shown), f"{name}: figures {shown}")
        for section, names in (("open-incidents", expected["open"]), ("resolved-incidents", expected["resolved"])):
            items = driver.find_elements(By.CSS_SELECTOR, f"#{section} li.incident .incident-name")
            got = [i.text for i in items]
            check(got == names, f"{section}: {got}, expected {names}")
        # Open incidents come first.
        order = driver.execute_script(
            "const o = document.getElementById('open-incidents');"
            "const u = document.querySelector('section.urls');"
            "return o && (o.compareDocumentPosition(u) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0;"
        )
        check(bool(order) or not expected["open"], "open incidents are not on top")

        # Full-page screenshot at desktop width.
        for _ in range(3):
            short = driver.execute_script(
                "return document.documentElement.scrollHeight - window.innerHeight"
            )
            if short <= 0:
                break
            size = driver.get_window_size()
            driver.set_window_size(1100, size["height"] + short)
        driver.save_screenshot(screenshot)

        # A phone: nothing wider than the screen.
        driver.set_window_size(390, 844)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        check(overflow <= 0, f"scrolls sideways on a phone by {overflow}px")

        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        check(not errors, f"console errors: {errors}")
        print(json.dumps({"urls": len(articles), "screenshot": screenshot, "console_errors": 0}))
    finally:
        driver.quit()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
