"""End to end in a real headless Chromium (Debian's, never a downloaded one) at a phone's 360×740, against a real
server (`agrimarket serve`, demo mode: the Shopee and Lazada sandboxes mounted, a demo cooperative connected):
register, log in, add a product with a photo over a slow connection (the upload progress bar), publish it on the
Shopee sandbox and see it live on the sandbox shop's page, buy one there (its signed push reaches our webhook),
mark the order shipped, switch to English. Every step leaves a screenshot in ``test-artifacts/``; every page of
ours is checked for 44 px touch targets and no horizontal scroll at 360 px."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

from agrimarket.demo.seed import DEMO_PASSWORD, DEMO_PHONE
from tests.factories import PASSWORD, new_phone
from tests.media.images import jpeg, photo
from tests.test_api_fuzz import _free_port
from tests.test_demo import SHOPS, demo_server

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("AGRIMARKET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 360, "height": 740}
TOUCH_MIN = 44

# What a finger taps on our pages: buttons, button-links, fields, the header's links (checkboxes are tapped by their
# label, which is the 48 px target).
_SMALL_TARGETS = """() => [...document.querySelectorAll(
  'main button, main .btn, main input:not([type=hidden]):not([type=checkbox]), main select, .top a, footer button')]
  .filter(e => e.offsetParent !== null)
  .map(e => { const r = e.getBoundingClientRect(); return [e.outerHTML.slice(0, 90), r.width, r.height]; })
  .filter(([, w, h]) => w < MIN || h < MIN)""".replace("MIN", str(TOUCH_MIN))
_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def _chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if found is None:
        message = f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Page]:
    executable = _chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile each run
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=PHONE,
            locale="vi-VN",
            is_mobile=True,
            has_touch=True,
        )
        context.set_default_timeout(20_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def eventually(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        time.sleep(0.3)


def test_a_farmer_on_a_phone_sells_on_a_sandbox_marketplace_and_ships(
    browser_page: Page, tmp_path: Path, artifacts_dir: Path
) -> None:
    page = browser_page
    shots = artifacts_dir / "e2e"
    shots.mkdir(parents=True, exist_ok=True)
    step = iter(range(1, 100))

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{next(step):02d}-{name}.png"), full_page=True)

    def phone_grade(where: str) -> None:
        assert page.evaluate(_SMALL_TARGETS) == [], f"{where}: touch targets under {TOUCH_MIN} px"
        assert page.evaluate(_OVERFLOW) <= 0, f"{where}: scrolls sideways at 360 px"

    photo_path = tmp_path / "sau-rieng.jpg"
    photo_path.write_bytes(jpeg(photo((1600, 1200), seed=7)))
    product = f"Sầu riêng E2E {new_phone()[-4:]}"

    with demo_server(tmp_path, _free_port()) as base_url:
        # Register a household.
        page.goto(f"{base_url}/register")
        expect(page.locator("html")).to_have_attribute("lang", "vi")
        phone_grade("register")
        page.fill("#f-phone", new_phone())
        page.fill("#f-full_name", "Trần Thị Bình")
        page.fill("#f-organization_name", "Hộ Trần Thị Bình")
        page.fill("#f-password", PASSWORD)
        shot("register")
        page.click("main button.primary, main button[type=submit], main form button")
        expect(page.locator("h1")).to_have_text("Hộ Trần Thị Bình")
        phone_grade("home of a new household")
        shot("registered-home")

        # Log in as the demo cooperative, whose shops are connected to the sandboxes.
        page.click("footer form[action='/logout'] button")
        page.fill("#f-phone", DEMO_PHONE)
        page.fill("#f-password", DEMO_PASSWORD)
        page.locator("main form button").first.click()
        expect(page.locator("h1")).to_contain_text("HTX")
        phone_grade("cooperative home")
        shot("cooperative-home")

        # Add a product with a photo, sent over a slow connection: the progress bar moves.
        page.click("main a.btn.primary")
        phone_grade("add a product")
        page.fill("#f-name", product)
        page.fill("#f-price", "95.000")
        page.fill("#f-stock", "5")
        page.set_input_files("#f-photo", str(photo_path))
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 50, "downloadThroughput": 2_000_000, "uploadThroughput": 60_000},
        )
        page.click("main form button.primary")
        page.wait_for_function(
            "() => { const b = document.querySelector('form[data-upload] progress');"
            " return b && !b.hidden && b.value > 0 && b.value < 100; }",
            timeout=15_000,
        )
        shot("photo-uploading")
        page.wait_for_url(re.compile(r"/products\?org="), timeout=60_000)
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        card_id = page.locator("li.card", has_text=product).get_attribute("id")
        assert card_id is not None
        product_id = card_id.removeprefix("p-")
        expect(page.locator(f"#p-{product_id} img")).to_be_visible()
        phone_grade("products")
        shot("product-added")

        # Publish it on the Shopee sandbox shop; its chip goes live.
        page.goto(f"{base_url}/products/{product_id}/shops")
        shopee = page.locator("li.shop", has_text="Shopee").first
        expect(shopee.locator(".chip")).to_have_attribute("data-state", "unlisted")
        phone_grade("shops")
        with page.expect_navigation():  # the form posts and is sent back to this page (303)
            shopee.locator("button", has_text="Đăng bán").click()

        def live() -> bool:
            page.goto(f"{base_url}/products/{product_id}/shops")  # a fresh load, never a reload racing a navigation
            return (
                page.locator("li.shop", has_text="Shopee").first.locator(".chip").get_attribute("data-state") == "live"
            )

        eventually(live, 30, "the Shopee chip says live")
        shot("published-live")

        # The sandbox marketplace's own page shows it; a buyer taps "buy 1" there.
        page.goto(f"{base_url}{SHOPS['shopee']}")
        item = page.locator("article", has_text=product)
        expect(item).to_be_visible()
        shot("sandbox-shop")
        # The sandbox's page is laid out for a desktop (its table overlaps at 360 px): the tap is sent to the button.
        with page.expect_navigation():
            item.locator("button", has_text="buy 1").first.dispatch_event("click")
        shot("sandbox-bought")

        def ordered() -> bool:
            page.goto(f"{base_url}/orders")
            return page.locator("a.order", has_text="Shopee").count() > 0

        eventually(ordered, 30, "the sandbox order on the orders page")
        phone_grade("orders")
        shot("order-received")

        # Mark it shipped with a tracking number.
        page.locator("a.order", has_text="Shopee").first.click()
        expect(page.locator("main")).to_contain_text(product)
        phone_grade("order")
        page.fill("#f-tracking_number", "VN-E2E-0001")
        page.click("form[action$='/ship'] button")
        expect(page.locator("p.ok")).to_be_visible()
        expect(page.locator("main")).to_contain_text("VN-E2E-0001")
        expect(page.locator("main")).to_contain_text("Đã gửi hàng")
        shot("shipped")

        # Switch to English.
        page.click("footer button[value=en]")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("main")).to_contain_text("Shipped")
        phone_grade("order in English")
        shot("english")
