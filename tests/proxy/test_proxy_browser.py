"""The page in headless Chromium against the whole stack (`stack.serve`: model server +
gunicorn proxy): file input, a synthetic drop, the camera (Chromium's fake device), console
errors, keyboard focus, and the README screenshots (docs/screenshots/)."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from image_files import encode
from PIL import Image
from proxy_images import upscaled_jpeg
from proxy_servers import ROOT, start_stack

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
# Playwright waits 5 s by default; a first model-server round trip on a loaded 2-core machine
# can take longer (the checks stay the same, only the patience grows).
expect.set_options(timeout=20_000)

# Debian's package; other systems name it otherwise (chromium-browser) or keep it elsewhere.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# What the proxy says while its model server cannot be reached (outage()).
UNREACHABLE = "The model server cannot be reached. Please try again in a moment."
PERCENT = re.compile(r"^[<>]?\d{1,3}(\.\d)?%$")


@functools.cache
def outage(path: str = "/api/predict") -> dict:
    """The proxy's own answer to `path` while its model server cannot be reached (an
    in-process proxy whose model-server address has nothing listening), for Playwright's
    routing to replay. The hand-written 503s it replaces had neither the `kind` the page
    branches on nor Retry-After, so the outage tests took the page's path for answers
    without a kind, never the one a real outage takes."""
    from proxy.app import create_app
    from proxy.config import ProxyConfig
    from stack.processes import free_port

    app = create_app(ProxyConfig(grpc_address=f"127.0.0.1:{free_port()}", timeout_s=2.0))
    client = app.test_client()
    if path == "/api/predict":
        photo = {"file": (io.BytesIO(encode(Image.new("RGB", (64, 48)), "JPEG")), "a.jpg")}
        answer = client.post(path, data=photo, content_type="multipart/form-data")
    else:
        answer = client.get(path)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.get_json()["kind"] == "model_unavailable", answer.get_json()
    return {
        "status": 503,
        "headers": {"Retry-After": answer.headers["Retry-After"]},
        "content_type": "application/json",
        "body": answer.get_data(as_text=True),
    }


# The running stack's output lines, for a failure message to quote (assert_top3).
STACK_OUTPUT: list[list[str]] = []


@pytest.fixture(scope="module")
def site(make_tiny_base):
    """The whole stack; with the shipped model when there is one (better screenshots),
    else the tiny untrained one."""
    base = ROOT / "models" / "cifar10"
    if not any(p.name.isdigit() for p in base.glob("*")):
        base = make_tiny_base()
    stack = start_stack(base)
    stack.wait_for_line("ready: open")
    STACK_OUTPUT.append(stack.lines)
    yield stack.url
    stack.stop()


@pytest.fixture(scope="module")
def photos(cifar_sample, tmp_path_factory) -> list[Path]:
    """Real CIFAR-10 test images, one per class, upscaled to 640x480 JPEG files."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in ("cat", "ship", "horse", "airplane", "frog", "truck"):
        index = list(cifar_sample.labels).index(cifar_sample.class_names.index(name))
        path = folder / f"{name}.jpg"
        path.write_bytes(upscaled_jpeg(cifar_sample.data[index], (640, 480)))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():  # a skip, as for every missing tool: NO_SKIPS=1 fails it
        pytest.skip("no Chromium on the PATH: apt-get install -y chromium chromium-driver")
    with playwright_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    """Chromium with its fake camera (a moving test pattern) and auto-granted permission."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS + FAKE_CAMERA)
    yield browser
    browser.close()


@pytest.fixture
def open_page(site):
    """page factory: a fresh context per page (own permissions, theme), all closed after."""
    contexts = []

    def open_(browser, viewport: dict, scheme: str = "light", scale: float = 1, touch=False):
        context = browser.new_context(
            viewport=viewport,
            color_scheme=scheme,
            device_scale_factor=scale,
            has_touch=touch,
            is_mobile=touch,
        )
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        # With the URL: Chromium's "Failed to load resource: ... 503" names no resource.
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and page.console_errors.append(f"{m.text} [{m.location.get('url', '')}]")
            ),
        )
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        page.goto(site)
        expect(page.locator("#model-badge")).to_contain_text(re.compile(r"version \d+"))
        return page

    yield open_
    for context in contexts:
        with contextlib.suppress(playwright_api.Error):  # its browser may be closed already
            context.close()


def assert_top3(card) -> None:
    rows = card.locator(".bar-row")
    try:
        expect(rows).to_have_count(3, timeout=30_000)
    except AssertionError as missing:  # say what the card shows instead: an error, or waiting
        state = card.get_attribute("class")
        log = "".join(STACK_OUTPUT[-1][-20:]) if STACK_OUTPUT else ""
        raise AssertionError(
            f"card [{state}] shows {card.inner_text()!r}; the stack's last lines:\n{log}"
        ) from missing
    # One read of all three rows: a live card's next answer may land between separate reads.
    shown = rows.evaluate_all(
        """rows => rows.map(row => [
            row.querySelector('.bar-label').innerText.trim(),
            row.querySelector('.bar-value').innerText.trim(),
            row.querySelector('.bar-track').getAttribute('aria-valuetext'),
        ])"""
    )
    for label, value, spoken in shown:
        assert label
        assert PERCENT.match(value)
        assert spoken == value
    expect(card.locator(".card-meta")).to_contain_text(re.compile(r"model v\d+"))


def test_file_input_and_drop_render_top3_without_console_errors(
    open_page, browser, site, photos
) -> None:
    page = open_page(browser, DESKTOP)
    page.set_input_files("#file-input", [str(p) for p in photos[:2]])
    cards = page.locator(".card")
    expect(cards).to_have_count(2)
    for i in range(2):
        assert_top3(cards.nth(i))
    names = {cards.nth(i).locator(".card-name").inner_text() for i in range(2)}
    assert names == {photos[0].name, photos[1].name}
    assert cards.first.locator(".card-image").get_attribute("alt").startswith("Uploaded image")

    drop_file(page, photos[2])
    expect(cards).to_have_count(3)
    assert cards.first.locator(".card-name").inner_text() == photos[2].name
    assert_top3(cards.first)
    expect(page.locator("#announcer")).not_to_be_empty()
    assert page.console_errors == []


def drop_file(page, path: Path) -> None:
    """Dispatch dragenter/dragover/drop with a DataTransfer holding the file, as a drag from
    the desktop would."""
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            const zone = document.getElementById("dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )


def test_a_weak_answer_is_marked_as_a_guess_that_names_the_classes(
    open_page, browser, photos, tmp_path
) -> None:
    """Every answer is one of the model's classes, so a picture of nothing gets one too (a
    plain blue square: 25-36 % for every shipped version). Under 50 % the card says it is a
    guess and names the classes; at or over 50 % it shows no hint."""
    page = open_page(browser, DESKTOP)
    blank = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), (90, 140, 220)).save(blank)
    page.set_input_files("#file-input", [str(blank), *map(str, photos)])
    cards = page.locator(".card")
    expect(cards).to_have_count(1 + len(photos))
    guesses = {}
    for i in range(cards.count()):
        card = cards.nth(i)
        assert_top3(card)
        top = float(card.locator(".bar-track").first.get_attribute("aria-valuenow"))
        hint = card.locator(".card-hint")
        guesses[card.locator(".card-name").inner_text()] = hint.is_visible()
        assert hint.is_visible() == (top < 50), (top, card.inner_text())
        tag = card.locator(".bar-label").first.evaluate(
            "label => getComputedStyle(label, '::after').content"
        )
        assert (tag == '"a guess"') == (top < 50), tag  # seen at a glance, beside the class
        if top < 50:  # one pill in its own case: it broke in two, and read "a Guess"
            pill = card.locator(".bar-label").first.evaluate(
                "label => { const s = getComputedStyle(label, '::after');"
                " return [s.whiteSpace, s.textTransform, s.display]; }"
            )
            assert pill == ["nowrap", "none", "inline-block"], pill
        if top < 50:
            expect(hint).to_contain_text("Just a guess")
            expect(hint).to_contain_text("airplane, automobile, bird")
            expect(hint).to_contain_text("ship and truck.")
    assert guesses[blank.name], guesses  # a blank picture is a guess
    assert not all(guesses.values()), guesses  # and real photos are not all guesses
    page.set_input_files("#file-input", str(blank))  # alone: announced by name, as a guess
    expect(page.locator("#announcer")).to_contain_text(f"{blank.name}: ")
    expect(page.locator("#announcer")).to_contain_text("(a guess)")


def test_an_animated_gif_is_previewed_as_the_frame_that_is_classified(
    open_page, browser, tmp_path
) -> None:
    """The proxy (as the served graph) classifies a GIF's first frame; a preview that played
    the animation showed frames the answer was not about."""
    page = open_page(browser, DESKTOP)
    gif = tmp_path / "red-then-blue.gif"
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((220, 30, 30), (30, 30, 220))]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    page.set_input_files("#file-input", str(gif))
    card = page.locator(".card").first
    assert_top3(card)
    image = card.locator(".card-image")
    expect(image).to_have_attribute("title", re.compile("first frame"))
    page.wait_for_function("document.querySelector('.card .card-image').complete")
    # What the screen shows over 400 ms, eight frames' worth of the animation (a canvas would
    # not tell: drawImage always takes an animated image's first frame).
    seen = []
    for _ in range(8):
        shot = Image.open(io.BytesIO(image.screenshot(animations="allow"))).convert("RGB")
        seen.append(shot.getpixel((shot.width // 2, shot.height // 4)))
        page.wait_for_timeout(50)
    assert all(r > 150 and b < 100 for r, _, b in seen), seen  # red: the first frame only
    assert page.console_errors == []


def test_bad_file_shows_a_readable_error(open_page, browser, tmp_path) -> None:
    page = open_page(browser, DESKTOP)
    fake = tmp_path / "notes.jpg"
    fake.write_bytes(b"this is not a picture")
    page.set_input_files("#file-input", str(fake))
    error = page.locator(".card .card-error")
    expect(error).to_be_visible()
    # A sentence, capitalised as the page's own messages are (the proxy's start in lower case).
    expect(error).to_have_text(re.compile(r"^This file is not an image"))
    # The card's title names the file; its message (once said twice) and announcement once.
    expect(error).not_to_contain_text("notes.jpg")
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^notes\.jpg: This file is not"))
    expect(page.locator(".card .card-retry")).to_be_hidden()  # the file is at fault: no retry
    # The only console line allowed is Chromium's own note about the 415 response.
    assert all("415" in line for line in page.console_errors), page.console_errors


def test_camera_capture_and_continuous_mode(open_page, browser) -> None:
    page = open_page(browser, DESKTOP)
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"x"}
    page.set_input_files("#file-input", [notes])
    expect(page.locator("#input-message")).to_contain_text("Skipped notes.txt")
    page.click("#camera-button")
    expect(page.locator("#input-message")).to_be_hidden()  # that note is not about the camera
    expect(page.locator("#camera-panel")).to_be_visible()
    page.click("#capture-button")
    assert_top3(page.locator(".card").first)
    page.click("label.switch")  # the visible switch; the checkbox itself is visually hidden
    expect(page.locator("#live-toggle")).to_be_checked()
    live = page.locator(".card.live")
    expect(live).to_have_count(1)
    assert_top3(live)
    # Each answer moves the same bars to its values: rebuilt, they regrew from zero twice a
    # second and flickered without reaching them.
    live.locator(".bar-row").first.evaluate("row => { row.dataset.seen = 'yes'; }")
    first = live.locator(".card-image").get_attribute("src")
    expect(live.locator(".card-image")).not_to_have_attribute("src", first)
    second = live.locator(".card-image").get_attribute("src")
    expect(live.locator(".card-image")).not_to_have_attribute("src", second)
    assert_top3(live)
    expect(live.locator(".bar-row").first).to_have_attribute("data-seen", "yes")
    page.click("label.switch")
    expect(page.locator("#live-toggle")).not_to_be_checked()
    # The stopped live card stays, named as a capture: each was "Live camera" before.
    expect(page.locator(".card-name").filter(has_text="Live camera")).to_have_count(0)
    expect(page.locator(".card-image[alt^='Uploaded image camera-']")).to_have_count(2)
    page.click("#camera-button")
    expect(page.locator("#camera-panel")).to_be_hidden()
    assert page.console_errors == []


def test_a_phone_capture_brings_its_result_into_view(open_page, browser) -> None:
    """On a phone the results sit below the camera: a captured frame's card was classified
    off-screen, its top edge at 790 of 844 pixels."""
    page = open_page(browser, PHONE)
    page.click("#camera-button")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    # A tap where the user sees the button: no scrolling by Playwright's own click.
    page.evaluate("window.scrollTo(0, 0); document.getElementById('capture-button').click()")
    card = page.locator(".card").first
    assert_top3(card)
    expect(card.locator(".bars")).to_be_in_viewport(ratio=1)  # retried while it scrolls
    # The preview is square, as the part classified: stretched to the card's height, it was a
    # sliver 124 pixels wide and 349 high.
    box = card.locator(".card-figure").bounding_box()
    assert abs(box["width"] - box["height"]) <= 1, box


def test_a_batch_keeps_its_order_and_the_stats_say_what_they_count(
    open_page, browser, photos
) -> None:
    """Requests go out in selection order, so the cards are shown in it (newest batch on top;
    the batch once came out reversed, its top cards answered last)."""
    page = open_page(browser, DESKTOP)
    page.set_input_files("#file-input", [str(p) for p in photos[:3]])
    cards = page.locator(".card")
    for i in range(3):
        assert_top3(cards.nth(i))
    names = [cards.nth(i).locator(".card-name").inner_text() for i in range(3)]
    assert names == [p.name for p in photos[:3]]
    expect(page.locator("#stats")).to_have_text(
        re.compile(r"^3 images · round trip: last \d+\sms, median \d+\sms of\s3$")
    )


def test_a_large_batch_is_announced_as_a_count(open_page, browser, photos) -> None:
    """Up to five results are read out one by one; forty once made one 1,400-character
    announcement. A batch of six, one of them no image, is read as a count and its failure."""
    page = open_page(browser, DESKTOP)
    files = [
        {"name": p.name, "mimeType": "image/jpeg", "buffer": p.read_bytes()} for p in photos[:5]
    ]
    files.append({"name": "junk.jpg", "mimeType": "image/jpeg", "buffer": b"not a picture"})
    page.set_input_files("#file-input", files)
    expect(page.locator(".card:not(.loading)")).to_have_count(6)
    expect(page.locator("#announcer")).to_have_text(
        re.compile(r"^6 images: 5 classified, 1 failed; junk\.jpg: This file is not an image")
    )


def test_clear_cancels_the_requests_still_in_flight(open_page, browser, photos) -> None:
    """Five files, four sent at a time, all held back by Playwright's routing, then Clear: the
    four in flight are aborted, the fifth is never sent, and nothing comes back on the page
    (answers after Clear once counted "0 images" and announced the cleared images)."""
    page = open_page(browser, DESKTOP)
    held, aborted = [], []
    page.route("**/api/predict*", lambda route: held.append(route))
    page.on("requestfailed", lambda request: aborted.append(request.failure))
    page.set_input_files("#file-input", [str(p) for p in photos[:5]])
    expect(page.locator(".card.loading")).to_have_count(5)
    expect(page.locator("#stats")).to_have_text("5 images · 5 in progress")
    held_routes(page, held, 4)
    assert len(held) == 4, f"{len(held)} requests in flight, not the four the page sends at once"
    page.click("#clear-button")
    for route in held:
        with contextlib.suppress(playwright_api.Error):  # the page aborted it: nothing to answer
            route.continue_()
    page.wait_for_timeout(1500)
    assert len(held) == 4, "a request queued behind the four in flight was sent after Clear"
    assert len(aborted) == 4 and all("ABORTED" in str(f) for f in aborted), aborted
    expect(page.locator(".card")).to_have_count(0)
    expect(page.locator("#announcer")).to_have_text("Results cleared.")
    expect(page.locator("#stats")).to_have_text("")
    # Clear disables itself; the focus goes on to the drop zone, not back to the page's start.
    expect(page.locator("#dropzone")).to_be_focused()


def test_a_request_never_answered_fails_after_its_timeout_and_can_be_sent_again(
    open_page, browser, photos
) -> None:
    """A proxy that takes the request and never answers (its workers stuck or swamped) left
    the card spinning for good. The page's clock is Playwright's, so the wait passes at
    once."""
    page = open_page(browser, DESKTOP)
    page.clock.install()
    held = []
    page.route("**/api/predict*", lambda route: held.append(route))
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    expect(card).to_have_class(re.compile(r"\bloading\b"))
    held_routes(page, held, 1)  # the page sent the request
    # 30 s, plus the upload's time at 32 bytes a millisecond.
    allowed_s = round(30 + photos[0].stat().st_size / 32_000)
    page.clock.run_for((allowed_s - 2) * 1000)
    expect(card).to_have_class(re.compile(r"\bloading\b"))
    page.clock.run_for(3_000)
    expect(card.locator(".card-error")).to_have_text(
        f"No answer from the server within {allowed_s} s: it may be overloaded. "
        "Try again in a moment."
    )
    expect(page.locator("#stats")).to_have_text("1 image · 1 failed")
    page.unroute("**/api/predict*")
    card.locator(".card-retry").click()
    assert_top3(card)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, UNREACHABLE),
        (404, "Label 'stable' of model 'cifar10' is not being served"),
    ],
)
def test_an_image_that_failed_on_the_server_can_be_sent_again(
    open_page, browser, photos, status, error
):
    """A failure of the server, not of the file (played by routing: one 503, or the 404 of a
    proxy whose MODEL_LABEL the server does not define), leaves a Try again button that names
    the image. The picture is a photo the page can show, so the thumbnail of what the model
    sees is hidden because the model never saw it, and comes back once it has."""
    page = open_page(browser, DESKTOP)
    not_served = {"status": status, "content_type": "application/json",
                  "body": json.dumps({"error": error, "kind": "not_found"})}  # fmt: skip
    answer = outage() if status == 503 else not_served
    page.route("**/api/predict*", lambda route: route.fulfill(**answer))
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    expect(card.locator(".card-error")).to_have_text(error)
    expect(page.locator("#stats")).to_have_text("1 image · 1 failed")
    expect(card.locator(".card-retry")).to_have_attribute("aria-label", "Try cat.jpg again")
    expect(card.locator(".card-thumb")).to_have_css("visibility", "hidden")
    page.unroute("**/api/predict*")
    card.locator(".card-retry").click()
    expect(card).to_be_focused()
    expect(card).to_have_accessible_name("cat.jpg")  # not an unnamed list item
    assert_top3(card)
    expect(card.locator(".card-thumb")).to_have_css("visibility", "visible")
    expect(card.locator(".card-retry")).to_be_hidden()
    expect(card.locator(".card-error")).to_be_hidden()
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^cat\.jpg: \w"))


def test_the_badge_follows_a_new_version_that_answers(open_page, browser, photos) -> None:
    """The badge polls every 30 s; an answer from another version than it names (a rollout
    in between) re-checks it at once. Routing plays the badge's stale answer (version 99)."""
    page = open_page(browser, DESKTOP)
    badge = page.locator("#model-badge")
    served = badge.inner_text()

    def stale(route) -> None:
        body = route.fetch().json()
        body["default"]["serves"] = 99
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/api/model", stale)
    page.reload()
    expect(badge).to_contain_text("version 99")
    page.unroute("**/api/model")
    page.set_input_files("#file-input", str(photos[0]))
    assert_top3(page.locator(".card").first)
    expect(badge).to_have_text(served, timeout=5_000)


def test_leaving_the_page_turns_the_camera_off(open_page, browser) -> None:
    """Hiding the tab used to stop continuous mode only: the camera (and its light) stayed on.
    The hidden tab is played by redefining document.hidden."""
    page = open_page(browser, DESKTOP)
    page.click("#camera-button")
    expect(page.locator("#camera-panel")).to_be_visible()
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page.locator("#camera-panel")).to_be_hidden()
    expect(page.locator("#camera-message")).to_contain_text("camera was turned off")
    assert page.evaluate("document.getElementById('camera-video').srcObject") is None
    # The capture button had the focus; hidden with its panel, it would drop it to the page.
    assert page.evaluate("document.activeElement.id") == "camera-button"


def test_the_camera_controls_can_be_reached_on_a_short_screen(open_page, browser, photos):
    """At 1280x600 the sticky input panel with the camera open was taller than the window:
    with results beside it, "Classify this frame" stayed below the fold at every scroll
    position, even focused."""
    page = open_page(browser, {"width": 1280, "height": 600})
    page.set_input_files("#file-input", [str(p) for p in photos * 3])
    expect(page.locator(".card:not(.loading)")).to_have_count(len(photos) * 3, timeout=60_000)
    page.click("#camera-button")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    for control in ("#capture-button", "label.switch"):
        page.focus(control if control.startswith("#") else "#live-toggle")
        page.wait_for_timeout(200)  # a smooth scroll may be under way
        box = page.locator(control).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 600, (control, box)


# getUserMedia as it behaves while the browser's permission prompt is open: the real (fake
# device) stream, 0.5 s late. Every stream handed out is kept, to check that all were stopped.
SLOW_PERMISSION = """() => {
    const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    window.handedOut = [];
    navigator.mediaDevices.getUserMedia = async (constraints) => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        const stream = await real(constraints);
        window.handedOut.push(stream);
        return stream;
    };
}"""


def wait_in_page(page, expression: str, timeout_s: float = 10) -> None:
    """page.wait_for_function, which the page's CSP forbids (it evaluates a string)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        page.wait_for_timeout(50)


LIVE_TRACKS = (
    "window.handedOut.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length"
)


def test_a_second_press_while_the_camera_starts_leaves_no_camera_on(open_page, browser) -> None:
    """A double click (or a held Enter) while permission was pending opened two streams; Stop
    camera ended one, and the other kept the camera light on until the tab closed."""
    page = open_page(browser, DESKTOP)
    page.evaluate(SLOW_PERMISSION)
    page.evaluate(
        "() => { const b = document.getElementById('camera-button'); b.click(); b.click(); }"
    )
    expect(page.locator("#camera-panel")).to_be_visible()
    page.wait_for_timeout(1_000)  # a second request, if one was made, has answered by now
    page.click("#camera-button")
    expect(page.locator("#camera-panel")).to_be_hidden()
    assert page.evaluate("window.handedOut.length") == 1
    assert page.evaluate(LIVE_TRACKS) == 0


def test_leaving_the_page_during_the_permission_prompt_starts_no_camera(open_page, browser):
    page = open_page(browser, DESKTOP)
    page.evaluate(SLOW_PERMISSION)
    page.click("#camera-button")
    page.evaluate("Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    expect(page.locator("#camera-message")).to_contain_text("not turned on")
    wait_in_page(page, "window.handedOut.length === 1")
    expect(page.locator("#camera-panel")).to_be_hidden()
    assert page.evaluate(LIVE_TRACKS) == 0


def test_a_live_answer_that_comes_after_continuous_mode_is_off_is_not_announced(
    open_page, browser
) -> None:
    """The answer to a frame sent before the switch went off was read out afterwards."""
    page = open_page(browser, DESKTOP)
    held = []
    page.route("**/api/predict*", lambda route: held.append(route))
    page.click("#camera-button")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    page.click("label.switch")
    held_routes(page, held, 1)  # a live frame was sent
    page.click("label.switch")  # off, while that frame's answer is held back
    for route in held:
        route.continue_()
    page.unroute("**/api/predict*")
    expect(page.locator(".card.loading")).to_have_count(0)
    assert_top3(page.locator(".card").first)  # the answer did come, and fills its card
    page.wait_for_timeout(300)
    assert "Live camera" not in page.locator("#announcer").inner_text()


def test_continuous_mode_turned_off_mid_frame_leaves_no_live_card(open_page, browser) -> None:
    """A frame still being encoded when Continuous was turned off made a new live card that
    Clear skipped forever. Encoding a 1280x960 frame took up to 1.6 s on a slow machine; here
    each encode is held 3 s (toBlob wrapped), so the switch is turned off during one."""
    page = open_page(browser, DESKTOP)
    page.evaluate(
        """() => {
            const real = HTMLCanvasElement.prototype.toBlob;
            window.encodes = { started: 0, done: 0 };
            HTMLCanvasElement.prototype.toBlob = function (callback, ...rest) {
                window.encodes.started += 1;
                real.call(this, (blob) => setTimeout(() => {
                    window.encodes.done += 1;
                    callback(blob);
                }, 3000), ...rest);
            };
        }"""
    )
    page.click("#camera-button")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    page.click("label.switch")
    wait_in_page(page, "window.encodes.started >= 1")
    page.click("label.switch")  # off, while that frame is being encoded
    wait_in_page(page, "window.encodes.done >= window.encodes.started")
    page.wait_for_timeout(300)
    expect(page.locator(".card.live")).to_have_count(0)
    expect(page.locator(".card")).to_have_count(0)


def test_a_frame_is_the_centre_square_the_model_sees(open_page, browser) -> None:
    """The fake camera gives 640x480 frames: the page sends their centre 480x480 square (what
    the proxy would crop anyway), not the whole frame."""
    page = open_page(browser, DESKTOP)
    page.click("#camera-button")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    page.click("#capture-button")
    image = page.locator(".card .card-image").first
    expect(image).to_have_js_property("complete", True)
    size = image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    video = page.locator("#camera-video").evaluate("(v) => [v.videoWidth, v.videoHeight]")
    assert size == [min(*video, 512)] * 2, (size, video)
    assert_top3(page.locator(".card").first)


def test_dragging_a_result_picture_within_the_page_is_no_drop(open_page, browser, photos) -> None:
    """A result picture dragged by mistake was answered with "That was a link or text, not a
    file". Playwright drags it with the mouse, as a person would."""
    page = open_page(browser, DESKTOP)
    page.set_input_files("#file-input", str(photos[0]))
    assert_top3(page.locator(".card").first)
    page.drag_and_drop(".card .card-image", "#dropzone")
    page.wait_for_timeout(300)
    expect(page.locator("#input-message")).to_be_hidden()
    expect(page.locator(".card")).to_have_count(1)


def test_a_dropped_folder_is_named_and_not_sent(open_page, browser, photos, tmp_path) -> None:
    """A dropped folder is listed among the files, and reading it failed as "The proxy cannot
    be reached". A real drag of a folder and a photo from the desktop, through Chromium's own
    drag input (DevTools protocol)."""
    page = open_page(browser, DESKTOP)
    folder = tmp_path / "holiday"
    folder.mkdir()
    shutil.copy(photos[1], folder / "inside.jpg")
    box = page.locator("#dropzone").bounding_box()
    point = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    data = {"items": [], "files": [str(folder), str(photos[0])], "dragOperationsMask": 1}
    cdp = page.context.new_cdp_session(page)
    for kind in ("dragEnter", "dragOver", "drop"):
        cdp.send("Input.dispatchDragEvent", {"type": kind, **point, "data": data})
    expect(page.locator("#input-message")).to_contain_text("holiday: a folder cannot be dropped")
    expect(page.locator(".card")).to_have_count(1)
    assert_top3(page.locator(".card").first)
    expect(page.locator("#input-message")).to_contain_text("holiday")  # not hidden by the batch


def test_percentages_at_the_ends_are_not_rounded_to_100_or_0(open_page, browser) -> None:
    page = open_page(browser, DESKTOP)
    shown = page.evaluate("[0.9951, 0.99951, 0.5, 0.0009, 0.0004].map(percent)")
    assert shown == ["99.5%", ">99.9%", "50.0%", "0.1%", "<0.1%"]


def test_an_older_badge_answer_does_not_overwrite_a_newer_one(open_page, browser) -> None:
    """Two polls in flight: the older one (model served) answers after the newer one (model
    server down). The order is played by wrapping fetch: the first /api/model call is the real
    answer held back 1 s, the second a 503."""
    page = open_page(browser, DESKTOP)
    badge = page.locator("#model-badge")
    expect(badge).to_have_class(re.compile(r"\bok\b"))
    page.evaluate(
        """(outage) => {
            const real = window.fetch;
            let calls = 0;
            window.fetch = async (url, options) => {
                if (!String(url).endsWith("/api/model")) return real(url, options);
                calls += 1;
                if (calls === 1) {
                    const answer = await real(url, options);
                    await new Promise((resolve) => setTimeout(resolve, 1000));
                    return answer;
                }
                return new Response(outage,
                    { status: 503, headers: { "Content-Type": "application/json" } });
            };
            watchModel();
            setTimeout(watchModel, 100);
        }""",
        outage("/api/model")["body"],
    )
    expect(badge).to_have_class(re.compile(r"\bdown\b"), timeout=5_000)
    page.wait_for_timeout(1_500)  # past the older answer
    expect(badge).to_have_class(re.compile(r"\bdown\b"))


def test_a_hung_badge_poll_gives_up_after_10_s_and_polling_goes_on(open_page, browser) -> None:
    """Each poll waits for the one before, so a /api/model request that never answers (a
    proxy wedged behind a front that keeps the connection) would have stopped the polling for
    good and left the badge green. Routing holds every poll; the page's timer must abort it."""
    page = open_page(browser, DESKTOP)
    badge = page.locator("#model-badge")
    expect(badge).to_have_class(re.compile(r"\bok\b"))
    held = []
    page.route("**/api/model", lambda route: held.append(route))
    page.evaluate("() => { watchModel(); }")  # not awaited: the poll is what hangs
    held_routes(page, held, 1)
    expect(badge).to_have_class(re.compile(r"\bok\b"))  # still waiting, within its 10 s
    expect(badge).to_contain_text("Server unreachable", timeout=12_000)
    page.unroute("**/api/model")
    expect(badge).to_have_class(re.compile(r"\bok\b"), timeout=8_000)  # the 5 s retry


def test_a_dropped_link_stays_on_the_page_with_a_sentence(open_page, browser) -> None:
    """A link dragged from another tab: the page must take the drop (else the browser opens
    the link in its place and the results are gone) and say what to do instead."""
    page = open_page(browser, DESKTOP)
    prevented = page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.setData("text/uri-list", "https://example.com/cat.jpg");
            const zone = document.getElementById("dropzone");
            const init = { dataTransfer: data, bubbles: true, cancelable: true };
            const over = new DragEvent("dragover", init);
            zone.dispatchEvent(over);
            zone.dispatchEvent(new DragEvent("drop", init));
            return over.defaultPrevented;
        }"""
    )
    assert prevented, "dragover not cancelled: the browser would navigate to the link"
    expect(page.locator("#input-message")).to_contain_text("not a file")
    assert page.console_errors == []


def test_no_camera_gives_a_clear_message(open_page, playwright) -> None:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)  # no camera
    try:
        page = open_page(browser, DESKTOP)
        page.click("#camera-button")
        message = page.locator("#camera-message")
        expect(message).to_be_visible()
        expect(message).to_have_text(
            "No camera was found on this device. You can still choose, drop or paste images."
        )
        expect(page.locator("#camera-panel")).to_be_hidden()
    finally:
        browser.close()


def test_paste_from_clipboard(open_page, browser, photos) -> None:
    page = open_page(browser, DESKTOP)
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name, { type: "image/jpeg" }));
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data }));
        }""",
        [photos[3].name, base64.b64encode(photos[3].read_bytes()).decode()],
    )
    assert_top3(page.locator(".card").first)
    assert page.console_errors == []


def test_pasting_a_link_says_what_to_paste_instead(open_page, browser) -> None:
    """A copied link or text used to do nothing at all."""
    page = open_page(browser, DESKTOP)
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.setData("text/plain", "https://example.com/cat.jpg");
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data }));
        }"""
    )
    expect(page.locator("#input-message")).to_contain_text("copy the picture itself")
    expect(page.locator("#announcer")).to_contain_text("link or text")
    expect(page.locator(".card")).to_have_count(0)


def test_keyboard_reaches_the_controls(open_page, browser) -> None:
    page = open_page(browser, DESKTOP)
    reached = []
    for _ in range(4):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert reached == ["", "dropzone", "pick-button", "camera-button"]  # "" = skip link
    expect(page.get_by_role("button", name="Choose files")).to_be_visible()  # hidden on phones


def test_the_model_info_link_leaves_the_results_where_they_are(open_page, browser) -> None:
    """It opened the JSON in the page's own tab, and going back had lost the results."""
    page = open_page(browser, DESKTOP)
    with page.context.expect_page() as opened:
        page.click("text=Model info (JSON)")
    assert opened.value.url.endswith("/api/model")
    assert page.url.endswith("/")


def test_drop_zone_opens_the_file_picker_from_the_keyboard(open_page, browser) -> None:
    page = open_page(browser, DESKTOP)
    # Named for what a key press does too, not only for what a mouse can drop.
    name = re.compile(r"^Drop photos here \(or press Enter to choose them\)$")
    expect(page.get_by_role("button", name=name)).to_have_id("dropzone")
    with page.expect_file_chooser() as chooser:
        page.locator("#dropzone").press("Enter")
    assert chooser.value.is_multiple()


def test_an_oversized_file_is_refused_in_the_page_with_the_limit_in_mib(open_page, browser):
    """A file of exactly the limit is refused too: the limit is on the request body, which
    adds the multipart headers (the proxy answered 413 to it after the upload)."""
    page = open_page(browser, DESKTOP)
    expect(page.locator("#limit-mib")).to_have_text("10")  # MAX_UPLOAD_BYTES = 10 MiB
    big = {"name": "big.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * (10 << 20)}
    page.set_input_files("#file-input", [big])
    error = page.locator(".card .card-error")
    expect(error).to_have_text("Too large: the limit is 10 MiB per image.")
    expect(page.locator("#announcer")).to_have_text(
        "big.jpg: Too large: the limit is 10 MiB per image."
    )
    assert page.console_errors == []


def test_a_format_the_browser_shows_but_the_proxy_does_not_read_is_sent_as_jpeg(
    open_page, browser, site, photos
) -> None:
    """An AVIF showed its preview, then "cannot be read here" (the proxy's 415): the page now
    sends the centre square it shows as a JPEG, and says so on the card."""

    avif = io.BytesIO()
    Image.open(photos[1]).convert("RGB").resize((96, 64)).save(avif, "AVIF", quality=90)
    page = open_page(browser, DESKTOP)
    page.set_input_files(
        "#file-input", [{"name": "ship.avif", "mimeType": "image/avif", "buffer": avif.getvalue()}]
    )
    card = page.locator(".card").first
    assert_top3(card)
    expect(card.locator(".card-meta")).to_contain_text(
        "sent as 64×64: the centre square of 96×64, converted to JPEG here"
    )
    assert [e for e in page.console_errors if "415" not in e] == []


def test_try_again_after_an_outage_still_converts_what_the_proxy_cannot_read(
    open_page, browser, site, photos
) -> None:
    """An AVIF sent during an outage (a routed 503) failed before the proxy could say 415, so
    the page had not converted it yet: Try again sends it the whole way again, and the 415 then
    gets its JPEG conversion (it used to re-send the AVIF and stop at "cannot be read")."""

    avif = io.BytesIO()
    Image.open(photos[1]).convert("RGB").resize((96, 64)).save(avif, "AVIF", quality=90)
    page = open_page(browser, DESKTOP)
    page.route("**/api/predict*", lambda route: route.fulfill(**outage()))
    page.set_input_files(
        "#file-input", [{"name": "ship.avif", "mimeType": "image/avif", "buffer": avif.getvalue()}]
    )
    card = page.locator(".card").first
    expect(card.locator(".card-retry")).to_be_visible()
    page.unroute("**/api/predict*")
    card.locator(".card-retry").click()
    assert_top3(card)
    expect(card.locator(".card-meta")).to_contain_text("converted to JPEG here")


def test_photos_over_the_proxys_limits_are_shrunk_in_the_page_and_classified(
    open_page, browser, site, photos
) -> None:
    """A 48-megapixel phone photo (over MAX_PIXELS), a 12 MB PNG (over MAX_UPLOAD_BYTES) and a
    30-megapixel WebP (under MAX_PIXELS, over the proxy's half of it for WebP: its 413 comes
    back) were refused; the page now sends their centre square at 1,024 pixels a side, says so
    on the card, and the answer is the proxy's for the same square cut by Pillow."""

    page = open_page(browser, DESKTOP)
    ship = Image.open(photos[1])
    big = io.BytesIO()
    ship.resize((8000, 6000), Image.Resampling.BICUBIC).save(big, "JPEG", quality=85)
    noise = np.random.default_rng(0).integers(0, 256, (1700, 2200, 3), dtype=np.uint8)
    heavy = io.BytesIO()
    Image.fromarray(noise).save(heavy, "PNG")
    assert len(heavy.getvalue()) > 10 << 20
    webp = io.BytesIO()
    ship.resize((6000, 5000), Image.Resampling.BICUBIC).save(webp, "WEBP", quality=80)
    page.set_input_files(
        "#file-input",
        [
            {"name": "phone.jpg", "mimeType": "image/jpeg", "buffer": big.getvalue()},
            {"name": "noise.png", "mimeType": "image/png", "buffer": heavy.getvalue()},
            {"name": "big.webp", "mimeType": "image/webp", "buffer": webp.getvalue()},
        ],
    )
    cards = page.locator(".card")
    expect(cards).to_have_count(3)
    for i, size in enumerate(("8000×6000", "2200×1700", "6000×5000")):
        assert_top3(cards.nth(i))
        expect(cards.nth(i).locator(".card-meta")).to_contain_text(
            f"sent as 1024×1024: the centre square of {size}"
        )
    square = io.BytesIO()
    ship.resize((8000, 6000), Image.Resampling.BICUBIC).crop((1000, 0, 7000, 6000)).resize(
        (1024, 1024), Image.Resampling.LANCZOS
    ).save(square, "JPEG", quality=92)
    answer = requests.post(f"{site}/api/predict", files={"file": ("s.jpg", square.getvalue())})
    expected = answer.json()["results"][0]["top"][0]["label"]
    assert cards.first.locator(".bar-label").first.text_content() == expected
    # Chromium logs the WebP's first answer, the 413 the page recovers from; nothing else.
    assert [e for e in page.console_errors if "413" not in e] == []


def test_the_bars_stay_visible_in_forced_colours(open_page, browser, photos) -> None:
    """High-contrast modes drop background colours: the bars (gradients) vanished."""
    page = open_page(browser, DESKTOP)
    page.emulate_media(forced_colors="active")
    page.set_input_files("#file-input", [str(photos[0])])
    assert_top3(page.locator(".card").first)
    style = (
        "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e.parentNode).backgroundColor]"
    )
    for i in range(3):
        fill, track = page.locator(".bar-fill").nth(i).evaluate(style)
        alpha = float(fill.rstrip(")").split(",")[3]) if fill.startswith("rgba") else 1.0
        assert alpha > 0.5 and fill != track, (fill, track)  # the top bar's was transparent


def test_a_long_file_name_wraps_instead_of_widening_a_phone_page(open_page, browser) -> None:
    page = open_page(browser, {"width": 375, "height": 667})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    name = "verylongname_without_any_breaks_com.example.application.document.txt"
    page.set_input_files("#file-input", [{"name": name, "mimeType": "text/plain", "buffer": b"x"}])
    expect(page.locator("#input-message")).to_contain_text("not an image")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # it was 642


def hold_the_upload_of(page, filename: str) -> list:
    """The routes of `filename`'s uploads, held back (answer them with .continue_() or
    .fulfill()); every other upload goes through."""
    held = []

    def route(route):
        if f'filename="{filename}"'.encode() in (route.request.post_data_buffer or b""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/predict*", route)
    return held


def test_an_older_drop_answered_last_is_not_announced_over_a_newer_one(
    open_page, browser, photos
) -> None:
    """Drop A (its answer held back), then B: B is read out; A's late answer fills its card
    but is not read after B (it was, and the last thing a screen reader said was the older)."""
    page = open_page(browser, DESKTOP)
    held = hold_the_upload_of(page, "cat.jpg")
    page.set_input_files("#file-input", [str(photos[0])])  # cat.jpg, held
    expect(page.locator(".card.loading")).to_have_count(1)
    page.set_input_files("#file-input", [str(photos[1])])  # ship.jpg
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^ship\.jpg: "))
    assert len(held) == 1
    held[0].continue_()
    assert_top3(page.locator(".card").nth(1))  # cat's card, answered
    page.wait_for_timeout(300)
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^ship\.jpg: "))


def test_an_older_drop_that_fails_last_is_still_announced(open_page, browser, photos) -> None:
    """The rule above silenced a late failure too: a screen reader never heard that the
    older image failed. Its failure is read (after the newer drop's answer)."""
    page = open_page(browser, DESKTOP)
    held = hold_the_upload_of(page, "cat.jpg")
    page.set_input_files("#file-input", [str(photos[0])])  # cat.jpg, held
    held_routes(page, held, 1)
    page.set_input_files("#file-input", [str(photos[1])])  # ship.jpg
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^ship\.jpg: "))
    held[0].fulfill(**outage())
    error = page.locator(".card.failed .card-error")
    expect(error).to_have_count(1)
    expect(page.locator("#announcer")).to_have_text(f"cat.jpg: {error.inner_text()}")


def test_a_file_just_inside_the_page_margin_reaches_the_proxy_within_its_limit(
    open_page, browser
) -> None:
    """The page's 1 KiB allowance for the multipart headers is enough: the largest file it
    sends is not refused for its size by the proxy (these bytes are no image: 415)."""
    page = open_page(browser, DESKTOP)
    edge = {"name": "edge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * ((10 << 20) - 1024)}
    page.set_input_files("#file-input", [edge])
    error = page.locator(".card .card-error")
    expect(error).to_contain_text("not an image we can read")
    assert "limit" not in error.inner_text()


def test_phone_wording_without_drop_or_paste(site, browser) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(site)
        dropzone = page.get_by_role("button", name="Tap to choose photos")
        expect(dropzone).to_be_visible()
        # The zone is the chooser: no second "Choose files" button beside "Use camera".
        expect(page.locator("#pick-button")).to_be_hidden()
        expect(page.get_by_role("button", name="Use camera")).to_be_visible()
        expect(page.locator("#dropzone-hint")).not_to_contain_text("paste", use_inner_text=True)
        # Out of sight on a phone, but still a heading a screen reader can jump to.
        expect(page.get_by_role("heading", name="Add images")).to_have_count(1)
    finally:
        context.close()


def test_files_that_are_not_images_are_named_on_the_page(open_page, browser, photos) -> None:
    page = open_page(browser, DESKTOP)
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"shopping list"}
    photo = {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": photos[0].read_bytes()}
    page.set_input_files("#file-input", [notes, photo])
    message = page.locator("#input-message")
    expect(message).to_be_visible()
    expect(message).to_have_text(re.compile(r"^Skipped notes\.txt: not an image"))
    expect(page.locator(".card")).to_have_count(1)  # the photo, classified
    assert_top3(page.locator(".card").first)
    expect(page.locator("#announcer")).to_have_text(
        re.compile(r"^Skipped notes\.txt.*TIFF\); cat\.jpg: ")  # no ".;" between the two
    )
    page.click("#clear-button")
    expect(message).to_be_hidden()
    # Only non-images, on an empty page: the note is shown, announced, and Clear dismisses it.
    page.set_input_files("#file-input", [notes])
    expect(message).to_be_visible()
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^Skipped notes\.txt"))
    page.click("#clear-button")
    expect(message).to_be_hidden()


def test_a_file_without_a_preview_gets_a_plain_card(open_page, browser) -> None:
    page = open_page(browser, DESKTOP)
    empty = {"name": "empty.jpg", "mimeType": "image/jpeg", "buffer": b""}
    page.set_input_files("#file-input", [empty])
    card = page.locator(".card")
    expect(card.locator(".card-error")).to_contain_text("empty")
    expect(card).to_have_class(re.compile(r"\bno-preview\b"))


def test_the_model_sees_transparency_as_white_in_the_thumbnail(open_page, browser) -> None:
    """The proxy flattens transparency over white before classifying; the 32x32 preview of
    what the model sees must show the same, not black."""

    clear = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(clear, "PNG")
    page = open_page(browser, DESKTOP)
    page.set_input_files("#file-input", [{"name": "clear.png", "mimeType": "image/png",
                                          "buffer": clear.getvalue()}])  # fmt: skip
    expect(page.locator(".card .bar-row")).to_have_count(3)
    # Drawn when the preview has loaded, which need not come before the answer: wait for it.
    page.wait_for_function(
        "document.querySelector('.card-thumb').getContext('2d')"
        ".getImageData(16, 16, 1, 1).data[3] === 255"
    )
    pixel = page.evaluate(
        "Array.from(document.querySelector('.card-thumb').getContext('2d')"
        ".getImageData(16, 16, 1, 1).data)"
    )
    assert pixel == [255, 255, 255, 255]


@pytest.mark.parametrize(
    ("status", "kind", "problem", "badge"),
    [
        (404, "not_found", "the model server knows no model named 'cifar100' (check MODEL_NAME)",
         "Model not found"),
        (503, "model_unavailable", "the model server is unavailable", "Model server unavailable"),
        # compose's nginx front, for a proxy that is down or restarting (proxy/nginx.conf)
        (503, "proxy_unavailable", "the service is starting or restarting: try again in a moment",
         "Service unavailable"),
    ],
)  # fmt: skip
def test_the_badge_says_what_the_proxy_says_is_wrong(
    open_page, browser, status, kind, problem, badge
) -> None:
    """Failures of /api/model, played by routing. A proxy whose MODEL_NAME the model server
    does not know answers 404 with a sentence; the badge said "Model server unavailable",
    though the server was up, and dropped the sentence. So it did for compose's front
    answering for a proxy that was restarting."""
    page = open_page(browser, DESKTOP)
    answer = {"status": status, "content_type": "application/json",
              "body": json.dumps({"error": problem, "kind": kind})}  # fmt: skip
    page.route("**/api/model", lambda route: route.fulfill(**answer))
    page.reload()
    expect(page.locator("#model-badge")).to_contain_text(badge)
    expect(page.locator("#model-badge")).to_have_class(re.compile(r"\bdown\b"))
    expect(page.locator("#badge-detail")).to_have_text(problem)
    expect(page.locator("#badge-detail")).to_be_visible()


def test_a_failed_request_rechecks_the_model_badge_at_once(open_page, browser, photos) -> None:
    """The badge polls every 30 s; after a failure it must not stay green that long. The
    model server's outage is played by Playwright's request routing (the real one is stopped
    in tests/proxy/test_proxy_recovery.py): /api/predict and /api/model answer 503."""
    page = open_page(browser, DESKTOP)
    expect(page.locator("#model-badge")).to_have_class(re.compile(r"\bok\b"))
    page.route("**/api/predict*", lambda route: route.fulfill(**outage()))
    page.route("**/api/model", lambda route: route.fulfill(**outage("/api/model")))
    page.set_input_files("#file-input", str(photos[0]))
    expect(page.locator(".card .card-error")).to_have_text(UNREACHABLE)
    expect(page.locator("#model-badge")).to_have_class(re.compile(r"\bdown\b"), timeout=5_000)


def fail_in_an_outage(page, photos):
    """Drops `photos` while every request answers 503 (the outage played by routing), then
    ends the outage; returns the Try N again button, showing all of them."""
    page.route("**/api/predict*", lambda route: route.fulfill(**outage()))
    page.set_input_files("#file-input", [str(p) for p in photos])
    button = page.locator("#retry-all-button")
    expect(button).to_have_text(f"Try {len(photos)} again")
    page.unroute("**/api/predict*")
    return button


def test_the_images_an_outage_failed_are_sent_again_in_one_click(open_page, browser, photos):
    """After an outage every failed card needed its own Try again. The outage is played by
    routing (503 for each request); a file the proxy refuses (not an image) is not retried.
    Six images, more than the page sends at once: the ones still queued are not failed
    cards any more, so nothing offers to send them a second time."""
    page = open_page(browser, DESKTOP)
    button = fail_in_an_outage(page, photos)
    # One sentence for the drop, not one per image: the outage's words are read once.
    error = page.locator(".card-error").first.inner_text()
    names = " and ".join([", ".join(p.name for p in photos[:-1]), photos[-1].name])
    expect(page.locator("#announcer")).to_have_text(
        f"{len(photos)} images: 0 classified, {len(photos)} failed; {names}: {error}"
    )
    bad = {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not an image"}
    page.set_input_files("#file-input", [bad])
    expect(page.locator(".card.failed")).to_have_count(len(photos) + 1)
    expect(button).to_have_text(f"Try {len(photos)} again")  # the file's own fault: not counted
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/api/predict" in r.url else None)
    button.click()
    expect(button).to_be_hidden()  # at once: the queued cards are not offered again
    expect(page.locator(".bar-row")).to_have_count(3 * len(photos))
    expect(page.locator(".card.failed")).to_have_count(1)
    expect(page.locator("#results")).to_be_focused()
    assert len(sent) == len(photos)


def test_try_all_again_hides_the_old_failures_of_the_cards_that_wait(open_page, browser, photos):
    """Six failed cards, four sent at a time: the two that wait for a free slot showed their
    old failure under the spinner."""
    page = open_page(browser, DESKTOP)
    button = fail_in_an_outage(page, photos)
    held, holding = [], [True]
    page.route("**/api/predict*", lambda r: held.append(r) if holding else r.continue_())
    button.click()
    expect(page.locator(".card.loading")).to_have_count(len(photos))
    expect(page.locator(".card.loading .card-error:visible")).to_have_count(0)
    held_routes(page, held, 4)
    assert len(held) == 4, held  # settings.parallel: the other two wait their turn
    holding.clear()
    for route in held:
        route.continue_()
    expect(page.locator(".bar-row")).to_have_count(3 * len(photos))


def test_the_badge_names_the_version_plain_requests_get(open_page, browser) -> None:
    """During a canary the newest loaded version is not the one a plain request gets; the
    badge once showed the newest. The proxy's real /api/model answer is rewritten by
    Playwright's routing into a canary (7 newest, the default label 'stable' on 6), then into
    a default label the server does not know (tests/proxy/test_proxy_api.py has the proxy's
    own side of both)."""
    page = open_page(browser, DESKTOP)
    badge = page.locator("#model-badge")

    def answer_with(default: dict) -> None:
        def rewrite(route) -> None:
            body = route.fetch().json()
            body["versions"] = [{"version": v, "state": "AVAILABLE", "error": ""} for v in (7, 6)]
            body["default"] = default
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

        page.unroute("**/api/model")
        page.route("**/api/model", rewrite)
        page.reload()

    answer_with({"version": None, "label": "stable", "serves": 6, "error": None})
    expect(badge).to_contain_text("version 6 (stable)")
    expect(badge).to_have_class(re.compile(r"\bok\b"))
    problem = "the default label 'stable' (MODEL_LABEL) does not resolve: no such label"
    answer_with({"version": None, "label": "stable", "serves": None, "error": problem})
    expect(badge).to_contain_text("default label stable not served")
    expect(badge).to_have_class(re.compile(r"\bdown\b"))
    # Shown under the badge, not only as a tooltip (out of reach on a phone or a keyboard).
    expect(page.locator("#badge-detail")).to_have_text(problem)
    expect(page.locator("#badge-detail")).to_be_visible()
    answer_with({"version": None, "label": "stable", "serves": 6, "error": None})
    expect(badge).to_have_class(re.compile(r"\bok\b"))
    expect(page.locator("#badge-detail")).to_be_hidden()
    assert page.console_errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_for_the_readme(open_page, browser, photos, scheme: str, tmp_path) -> None:
    """Full pages of results in both layouts and schemes, with no console error. They go to
    tmp_path; `make screenshots` (UPDATE_SCREENSHOTS=1) writes README's docs/screenshots."""
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "" if scheme == "light" else "-dark"
    for name, viewport, touch, count in (("desktop", DESKTOP, False, 6), ("phone", PHONE, True, 2)):
        # The phone as a phone (touch, its own wording), at twice the pixels, as phones draw.
        page = open_page(browser, viewport, scheme, 2 if touch else 1, touch)
        page.set_input_files("#file-input", [str(p) for p in photos[:count]])
        expect(page.locator(".bar-row")).to_have_count(3 * count, timeout=60_000)
        page.wait_for_timeout(1200)  # let the bars finish their animation
        path = folder / f"{name}{suffix}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
        assert page.console_errors == []


# ----- answers from a front in between, and what Try again offers (a page review, 2026-11-28)

HTML_PAGE = {"content_type": "text/html", "body": "<html><body><h1>nginx</h1></body></html>"}


def route_first(page, answer: dict) -> None:
    """The first /api/predict request gets `answer`; later ones reach the proxy."""
    answered = []

    def handle(route) -> None:
        if answered:
            route.continue_()
        else:
            answered.append(route)
            route.fulfill(**answer)

    page.route("**/api/predict*", handle)


def test_a_fronts_html_413_gets_the_photo_shrunk_and_sent_again(open_page, browser, photos):
    """A TLS front with nginx's default 1 MiB body limit answers 413 as HTML: the page used to
    stop at "Unexpected answer (HTTP 413)"; it now shrinks the photo as for the proxy's 413."""
    page = open_page(browser, DESKTOP)
    route_first(page, {"status": 413, **HTML_PAGE})
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    assert_top3(card)
    expect(card.locator(".card-meta")).to_contain_text("shrunk here")


def test_a_fronts_html_502_says_the_service_is_unavailable_and_can_be_retried(
    open_page, browser, photos
):
    page = open_page(browser, DESKTOP)
    route_first(page, {"status": 502, **HTML_PAGE})
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    expect(card.locator(".card-error")).to_have_text(
        "The service is unavailable for the moment (HTTP 502). Try again in a moment."
    )
    card.locator(".card-retry").click()
    assert_top3(card)


@pytest.mark.parametrize(
    ("status", "kind", "retry"),
    [
        (414, "bad_request", False),
        (431, "bad_request", False),
        (400, "http", False),  # a request Werkzeug refused: the proxy's generic kind
        (404, "not_found", True),
    ],
)
def test_try_again_is_offered_by_the_kind_of_error(open_page, browser, photos, status, kind, retry):
    """A request the front refuses (a URL or header too long) fails again however often it is
    sent; a version not served yet may be served by the next try."""
    page = open_page(browser, DESKTOP)
    answer = {"status": status, "content_type": "application/json",
              "body": json.dumps({"error": f"refused ({status})", "kind": kind})}  # fmt: skip
    page.route("**/api/predict*", lambda route: route.fulfill(**answer))
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    expect(card.locator(".card-error")).to_have_text(f"Refused ({status})")
    if retry:
        expect(card.locator(".card-retry")).to_be_visible()
    else:
        expect(card.locator(".card-retry")).to_be_hidden()


@pytest.mark.parametrize("status", [414, 431])
def test_a_fronts_own_refusal_page_is_not_offered_try_again(open_page, browser, photos, status):
    """A front's HTML page has no kind: its status alone says the request is at fault."""
    page = open_page(browser, DESKTOP)
    route_first(page, {"status": status, **HTML_PAGE})
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    expect(card.locator(".card-error")).to_have_text(
        f"Unexpected answer from the server (HTTP {status})."
    )
    expect(card.locator(".card-retry")).to_be_hidden()


def test_try_again_hides_the_old_error_while_it_waits(open_page, browser, photos) -> None:
    page = open_page(browser, DESKTOP)
    page.route("**/api/predict*", lambda route: route.fulfill(**outage()))
    page.set_input_files("#file-input", str(photos[0]))
    card = page.locator(".card").first
    expect(card.locator(".card-error")).to_be_visible()
    page.unroute("**/api/predict*")
    held = []
    page.route("**/api/predict*", lambda route: held.append(route))
    card.locator(".card-retry").click()
    expect(card).to_have_class(re.compile(r"\bloading\b"))
    expect(card.locator(".card-error")).to_be_hidden()  # not under the spinner
    held_routes(page, held, 1)
    assert len(held) == 1, held
    held[0].continue_()
    page.unroute("**/api/predict*")
    assert_top3(card)


def test_a_long_file_name_is_not_repeated_in_its_error(open_page, browser) -> None:
    """The proxy shortens a long name in its sentence; the card (titled with the whole name)
    still shows the sentence without it, and the error wraps inside the card."""
    page = open_page(browser, PHONE)
    name = "photo-" + "x" * 110 + ".jpg"
    page.set_input_files("#file-input", [{"name": name, "mimeType": "image/jpeg", "buffer": b"no"}])
    error = page.locator(".card .card-error")
    expect(error).to_have_text(re.compile(r"^This file is not an image"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_an_error_with_a_long_unbroken_word_wraps_inside_its_card(open_page, browser, photos):
    """The proxy's sentences quote what they were given (a model name, a path); one unbroken
    word longer than a phone card must wrap, not run past the card's edge. Routing plays the
    answer, as the name the proxy quotes is shortened before it gets this long."""
    page = open_page(browser, PHONE)
    word = "models/" + "cifar10_experimental_" * 8 + "v7"
    body = json.dumps({"error": f"The model server does not know {word}", "kind": "http"})
    page.route(
        "**/api/predict*",
        lambda route: route.fulfill(status=400, body=body, content_type="application/json"),
    )
    page.set_input_files("#file-input", str(photos[0]))
    error = page.locator(".card .card-error")
    expect(error).to_contain_text("cifar10_experimental_")
    card_width, error_width = page.evaluate(
        """() => [document.querySelector(".card").clientWidth,
                 document.querySelector(".card .card-error").scrollWidth]"""
    )
    assert error_width <= card_width, (error_width, card_width)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_camera_that_stops_by_itself_closes_the_panel_and_says_so(open_page, browser) -> None:
    """Unplugged, or taken by another application: the track ends (played by dispatching its
    `ended` event, which is what the browser fires; stop() by the page fires none)."""
    page = open_page(browser, DESKTOP)
    page.click("#camera-button")
    expect(page.locator("#camera-panel")).to_be_visible()
    page.click("label.switch")
    expect(page.locator(".card.live")).to_have_count(1)
    page.evaluate(
        "document.querySelector('#camera-video').srcObject.getVideoTracks()[0]"
        ".dispatchEvent(new Event('ended'))"
    )
    expect(page.locator("#camera-panel")).to_be_hidden()
    expect(page.locator("#camera-message")).to_contain_text("The camera stopped")
    expect(page.locator("#live-toggle")).not_to_be_checked()
    expect(page.locator("#camera-button")).to_have_attribute("aria-expanded", "false")
    # The continuous switch had the focus; hidden with its panel, it dropped it to the page.
    expect(page.locator("#camera-button")).to_be_focused()


def test_the_live_card_keeps_its_failure_up_while_the_next_frame_is_sent(open_page, browser):
    """Try again hides a card's old failure under its spinner; the live camera card, sending a
    frame twice a second, showed its reason only in flashes that way."""
    page = open_page(browser, DESKTOP)
    failed, held = [], []

    def fail_then_hold(route) -> None:  # the first frame fails, the next one waits
        if failed:
            held.append(route)
        else:
            failed.append(route)
            route.fulfill(**outage())

    page.route("**/api/predict*", fail_then_hold)
    page.click("#camera-button")
    page.click("label.switch")
    live = page.locator(".card.live")
    expect(live.locator(".card-error")).to_have_text(UNREACHABLE)
    held_routes(page, held, 1)  # the next frame's request, held unanswered
    expect(live).to_have_class(re.compile(r"\bloading\b"))
    expect(live.locator(".card-error")).to_be_visible()
    page.click("label.switch")  # continuous mode off: the held request is not answered


def test_a_stopped_live_card_whose_last_frame_failed_offers_try_again(open_page, browser):
    """While live, the card retries with its next frame and offers no Try again; stopped after
    a failed frame, it stayed failed, counted in the stats, with no way to send it again but
    Clear."""
    page = open_page(browser, DESKTOP)
    page.route("**/api/predict*", lambda route: route.fulfill(**outage()))
    page.click("#camera-button")
    page.click("label.switch")
    live = page.locator(".card.live")
    expect(live.locator(".card-error")).to_have_text(UNREACHABLE)
    expect(live.locator(".card-retry")).to_be_hidden()
    page.click("label.switch")  # continuous mode off
    card = page.locator(".card").first
    expect(card).not_to_have_class(re.compile(r"\blive\b"))
    name = card.locator(".card-name").inner_text()
    assert re.fullmatch(r"camera-\d+\.jpg", name), name
    expect(card.locator(".card-retry")).to_be_visible()
    expect(card.locator(".card-retry")).to_have_attribute("aria-label", f"Try {name} again")
    expect(page.locator("#retry-all-button")).to_have_text("Try 1 again")
    page.unroute("**/api/predict*")
    card.locator(".card-retry").click()
    assert_top3(card)
    expect(page.locator("#stats")).not_to_contain_text("failed")


def test_a_capture_on_a_phone_keeps_the_camera_preview_in_view(open_page, browser, photos):
    """Each new card scrolled to the top of the screen; on a phone, with the results below the
    camera, that took the preview being aimed out of view (earlier results below make the
    page long enough to scroll that far). The card still comes into view, just."""
    page = open_page(browser, PHONE)
    page.emulate_media(reduced_motion="reduce")  # the scroll at once, not animated
    page.set_input_files("#file-input", [str(p) for p in photos])
    expect(page.locator(".bar-row")).to_have_count(3 * len(photos))
    page.click("#camera-button")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    # A tap where the user sees the button: no scrolling by Playwright's own click.
    page.evaluate("window.scrollTo(0, 0); document.getElementById('capture-button').click()")
    card = page.locator(".card").first
    assert_top3(card)
    expect(card.locator(".bars")).to_be_in_viewport(ratio=1)
    video = page.locator("#camera-video").bounding_box()
    assert video["y"] >= 0, video  # the preview still on screen, whole


def test_on_a_phone_the_badge_stays_put_when_its_detail_appears(open_page, browser) -> None:
    """Aligned right in the wrapped header, the badge jumped across it whenever a detail (an
    outage) appeared under it, and back when it went."""
    page = open_page(browser, PHONE, touch=True)
    badge = page.locator("#model-badge")
    before = badge.bounding_box()
    page.route("**/api/model", lambda route: route.fulfill(**outage("/api/model")))
    page.evaluate("watchModel()")
    expect(page.locator("#badge-detail")).to_be_visible()
    after = badge.bounding_box()
    assert abs(after["x"] - before["x"]) < 1, (before, after)


@pytest.mark.parametrize("width", [1366, 900, 390])
def test_the_footer_has_no_dangling_separator(open_page, browser, width: int) -> None:
    """Wrapped between 480 and 1,014 px, a "·" ended a line; on a phone the wrapped middle
    item was aligned left under centred ones."""
    page = open_page(browser, {"width": width, "height": 900})
    items = page.locator(".footer > *:visible")
    boxes = [items.nth(i).bounding_box() for i in range(items.count())]
    rows = {round(box["y"]) for box in boxes}
    if len(rows) == 1:  # one line: separators between every two items
        assert items.count() == 5, items.all_inner_texts()
        return
    assert items.count() == 3 and len(rows) == 3, items.all_inner_texts()  # one item a line
    footer = page.locator(".footer").bounding_box()
    centre = footer["x"] + footer["width"] / 2
    for box in boxes:
        assert abs(box["x"] + box["width"] / 2 - centre) < 2, (box, width)
    for i in range(items.count()):
        align = items.nth(i).evaluate("item => getComputedStyle(item).textAlign")
        assert align == "center", (i, align)


def test_the_badge_works_without_abortsignal_timeout(site, browser) -> None:
    """Safari before 16 has no AbortSignal.timeout: the badge stayed "Server unreachable"."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        context.add_init_script("delete AbortSignal.timeout")
        page = context.new_page()
        page.goto(site)
        expect(page.locator("#model-badge")).to_contain_text(re.compile(r"version \d+"))
    finally:
        context.close()


def record_uploads(page) -> None:
    """Keep a copy of each file the page puts in a request (Playwright does not expose a
    multipart body); sent_uploads reads them back."""
    page.evaluate("""() => {
      window.sentFiles = [];
      const fetch0 = window.fetch;
      window.fetch = async (url, init) => {
        const file = init && init.body instanceof FormData && init.body.get("file");
        if (file) {
          const bytes = new Uint8Array(await file.arrayBuffer());
          window.sentFiles.push(btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join("")));
        }
        return fetch0(url, init);
      };
    }""")


def sent_uploads(page) -> list[bytes]:
    return [base64.b64decode(text) for text in page.evaluate("window.sentFiles")]


def test_a_heavy_photo_within_the_limits_is_shrunk_before_upload(open_page, browser, photos):
    """A 12-megapixel phone photo of several MB was uploaded whole for a model that sees 32x32
    pixels: seconds on a phone's uplink. Over 1 MiB and 1024 pixels a side, the page sends its
    centre square; a light photo still goes as it is."""

    rng = np.random.default_rng(0)
    ship = Image.open(photos[1]).convert("RGB").resize((3000, 2000), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(ship, np.int16) + rng.integers(-40, 40, (2000, 3000, 3)), 0, 255)
    heavy = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(heavy, "JPEG", quality=95)
    assert 1 << 20 < len(heavy.getvalue()) < 10 << 20
    light = io.BytesIO()
    ship.resize((1500, 1000)).save(light, "JPEG", quality=80)
    assert len(light.getvalue()) < 1 << 20
    page = open_page(browser, DESKTOP)
    record_uploads(page)
    page.set_input_files(
        "#file-input",
        [
            {"name": "heavy.jpg", "mimeType": "image/jpeg", "buffer": heavy.getvalue()},
            {"name": "light.jpg", "mimeType": "image/jpeg", "buffer": light.getvalue()},
        ],
    )
    cards = page.locator(".card")
    assert_top3(cards.nth(0))
    assert_top3(cards.nth(1))
    expect(cards.nth(0).locator(".card-meta")).to_contain_text(
        "sent as 1024×1024: the centre square of 3000×2000, shrunk here"
    )
    expect(cards.nth(1).locator(".card-meta")).not_to_contain_text("sent as")
    sent = [len(upload) for upload in sent_uploads(page)]
    assert len(sent) == 2 and min(sent) > 10_000 and max(sent) < 1 << 20, sent  # none heavy


def test_a_heavy_photo_taken_sideways_is_shrunk_upright(open_page, browser) -> None:
    """A phone stores a portrait photo as landscape pixels with an EXIF orientation tag. The
    proxy turns such a file upright before it crops; the page's shrinking must too, or a heavy
    portrait photo is classified lying on its side. The displayed picture has four coloured
    quadrants in its centre square; the square the page sends must show them where they are."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(1)
    upright = np.zeros((3000, 2000, 3), np.int16)  # portrait, as shown
    colours = {
        (0, 0): (220, 40, 40),
        (0, 1): (40, 200, 40),
        (1, 0): (40, 40, 220),
        (1, 1): (230, 220, 40),
    }
    for (row, col), colour in colours.items():
        upright[500 + row * 1000 : 1500 + row * 1000, col * 1000 : (col + 1) * 1000] = colour
    upright = np.clip(upright + rng.integers(-30, 30, upright.shape), 0, 255).astype(np.uint8)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
    heavy = io.BytesIO()
    stored.save(heavy, "JPEG", quality=95, exif=exif)
    assert 1 << 20 < len(heavy.getvalue()) < 10 << 20
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(heavy.getvalue())))
    assert shown.size == (2000, 3000)  # the tag is read as intended
    page = open_page(browser, DESKTOP)
    record_uploads(page)
    page.set_input_files(
        "#file-input",
        [{"name": "portrait.jpg", "mimeType": "image/jpeg", "buffer": heavy.getvalue()}],
    )
    card = page.locator(".card").first
    assert_top3(card)
    expect(card.locator(".card-meta")).to_contain_text(
        "sent as 1024×1024: the centre square of 2000×3000, shrunk here"
    )
    (sent,) = sent_uploads(page)
    square = Image.open(io.BytesIO(sent))
    assert square.size == (1024, 1024)
    got = np.asarray(square.convert("RGB").resize((2, 2), Image.Resampling.BOX), np.float32)
    for (row, col), colour in colours.items():
        assert np.abs(got[row, col] - colour).max() < 25, (row, col, got[row, col], colour)


def held_routes(page, held: list, count: int) -> None:
    """Until `count` requests are held by a routing that appends them to `held`."""
    for _ in range(200):
        if len(held) >= count:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"{len(held)} requests held, not {count}")


def test_a_drop_answered_after_a_live_change_is_still_announced(open_page, browser, photos):
    """With continuous mode on, a live change read out first silenced the answer of a drop
    made before it (the live frame counted as a newer action)."""
    page = open_page(browser, DESKTOP)
    page.click("#camera-button")
    expect(page.locator("#camera-video")).to_have_js_property("readyState", 4)
    page.click("label.switch")
    assert_top3(page.locator(".card.live"))
    held = []
    page.route("**/api/predict*", lambda route: held.append(route))
    held_routes(page, held, 1)  # a live frame sent before the drop: answered as it is
    page.set_input_files("#file-input", str(photos[0]))
    held_routes(page, held, 2)  # the drop
    held[0].continue_()
    held_routes(page, held, 3)  # the next live frame, sent after the drop
    held[2].fulfill(**outage())  # a live change
    expect(page.locator("#announcer")).to_contain_text("Live camera")
    held[1].continue_()
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^cat\.jpg: "))


def test_the_same_failure_twice_is_announced_twice(open_page, browser, photos) -> None:
    """Try again failing with the same words left the live region unchanged, so a screen reader
    said nothing: the region is emptied first and written again."""
    page = open_page(browser, DESKTOP)
    page.route("**/api/predict*", lambda route: route.fulfill(**outage()))
    page.set_input_files("#file-input", str(photos[0]))
    announcer = page.locator("#announcer")
    expect(announcer).to_have_text(re.compile(r"^cat\.jpg: The model server"))
    # Record every text the region takes from now on.
    page.evaluate(
        """() => {
          window.readOut = [];  // not `spoken`: the page's own function of that name is global
          new MutationObserver(() => window.readOut.push(
            document.getElementById("announcer").textContent
          )).observe(document.getElementById("announcer"), { childList: true, subtree: true,
                                                              characterData: true });
        }"""
    )
    page.locator(".card .card-retry").click()
    expect(page.locator(".card .card-retry")).to_be_visible()
    wait_in_page(page, "window.readOut.length >= 2")
    spoken = page.evaluate("window.readOut")
    assert spoken[0] == "" and spoken[-1].startswith("cat.jpg: The model server"), spoken
