"""The web page in a real browser, as a person uses it: drop images, watch them finish,
give a key when asked, page through, and act on an image as its owner.

Every test runs against one `imgpipe serve` (conftest.py) and fails on any console error
or uncaught exception in the page.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Locator, Page, expect

from integration import images

from .conftest import WAIT_MS, BrowserPage, WebServer

pytestmark = pytest.mark.browser

PAGE_SIZE = 12  # app.js PAGE_SIZE: images per request of the list
THUMBNAIL = (150, 150)


def scene(
    width: int, height: int, sky: tuple[int, int, int], sun: tuple[int, int, int]
) -> Image.Image:
    """A small picture with a gradient sky, a sun and a hill: easy to tell apart by eye."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = y / height
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(int(c * (1 - shade) + 255 * shade * 0.6) for c in sky),
        )
    r = min(width, height) // 6
    draw.ellipse([width * 0.65, height * 0.2, width * 0.65 + 2 * r, height * 0.2 + 2 * r], sun)
    draw.ellipse([-width * 0.2, height * 0.6, width * 1.2, height * 1.6], (46, 110, 60))
    return image


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, quality=90) if fmt in ("JPEG", "WEBP") else image.save(out, fmt)
    return out.getvalue()


def open_page(page: Page, reload: bool = False) -> None:
    """Open (or reload) the page and wait until its first list request has answered, as a
    person sees the page before using it."""
    page.reload() if reload else page.goto("/")
    # The script marks the list busy before its first request and idle after the answer.
    expect(page.locator("#images")).to_have_attribute("aria-busy", "false")


def drop(page: Page, files: list[tuple[str, str, bytes]]) -> None:
    """Drop files on the drop zone as a person would from a file manager: a DataTransfer
    holding File objects, through dragenter, dragover and drop."""
    payload = [
        {"name": name, "type": media_type, "data": base64.b64encode(data).decode()}
        for name, media_type, data in files
    ]
    page.evaluate(
        """(files) => {
            const transfer = new DataTransfer();
            for (const f of files) {
              const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
              transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            const zone = document.getElementById("drop-zone");
            for (const type of ["dragenter", "dragover", "drop"]) {
              zone.dispatchEvent(
                new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }),
              );
            }
        }""",
        payload,
    )


def card(page: Page, name: str) -> Locator:
    return page.locator("li.card").filter(has=page.locator(".card-title", has_text=name))


def expect_done_with_thumbnails(page: Page, name: str) -> None:
    """The card reaches done and shows its three variants, decoded by the browser."""
    item = card(page, name)
    expect(item.locator(".status")).to_have_text("done", timeout=WAIT_MS)
    item.scroll_into_view_if_needed()  # variants load when their card comes into view
    shown = item.locator(".variant img")
    expect(shown).to_have_count(3)
    for index in range(3):
        decoded_size(shown.nth(index))  # raises if the browser could not decode it
    thumbnail = item.locator(".variant", has_text="thumbnail").locator("img")
    size = decoded_size(thumbnail)
    assert size == THUMBNAIL, f"{name}: thumbnail {size}"


def decoded_size(image: Locator) -> tuple[int, int]:
    """An <img>'s decoded size once the browser has loaded its current src; an error if
    the browser failed to load or decode it."""
    size = image.evaluate(
        """(img) => new Promise((ok, bad) => {
             const done = () => ok([img.naturalWidth, img.naturalHeight]);
             const fail = () => bad(new Error(`not decoded: ${img.src}`));
             if (img.complete) (img.naturalWidth ? done : fail)();
             else { img.addEventListener("load", done); img.addEventListener("error", fail); }
           })"""
    )
    return int(size[0]), int(size[1])


def wait_for_preview(preview: Locator) -> tuple[int, int]:
    """The preview's decoded size, once the browser has loaded its current src."""
    expect(preview).to_have_attribute("src", re.compile(r"sig="))
    return decoded_size(preview)


def test_three_dropped_images_are_processed_and_keep_their_names_after_a_reload(
    signed_in: BrowserPage, artifacts: Path
) -> None:
    page = signed_in.page
    open_page(page)
    files = [
        (
            "Été à Zürich.jpg",
            "image/jpeg",
            encoded(scene(1200, 800, (40, 90, 200), (250, 200, 60)), "JPEG"),
        ),
        (
            "harbour-at-dusk.png",
            "image/png",
            encoded(scene(640, 480, (120, 40, 140), (255, 120, 40)), "PNG"),
        ),
        (
            "Ακρόπολη.webp",
            "image/webp",
            encoded(scene(900, 900, (20, 140, 210), (255, 255, 210)), "WEBP"),
        ),
    ]
    drop(page, files)
    for name, _, _ in files:
        expect_done_with_thumbnails(page, name)
    page.screenshot(path=artifacts / "dropped-and-done.png", full_page=True)

    open_page(page, reload=True)
    for name, _, _ in files:
        # After a reload the names come from the server (original.filename), not the tab.
        expect_done_with_thumbnails(page, name)

    # The picture in the README (docs/web-page.png): the newest card's render builder open.
    newest = card(page, files[-1][0])
    newest.locator("summary", has_text="Render URL").click()
    wait_for_preview(newest.locator("img.render-preview"))
    page.screenshot(path=artifacts / "web-page.png", full_page=True)


@pytest.mark.parametrize(
    ("name", "media_type", "data"),
    [
        ("notes.txt", "text/plain", b"Just some text, not an image.\n"),
        ("drawing.svg", "image/svg+xml", images.svg()),
    ],
    ids=["text", "svg"],
)
def test_a_refused_file_shows_its_problem(
    signed_in: BrowserPage, artifacts: Path, name: str, media_type: str, data: bytes
) -> None:
    page = signed_in.page
    signed_in.console.expect_status(415)
    open_page(page)
    drop(page, [(name, media_type, data)])
    item = card(page, name)
    expect(item.locator(".status")).to_have_text("rejected")
    problem = item.locator(".problem")
    expect(problem).to_be_visible()
    expect(problem.locator("code")).to_have_text("unsupported_type")
    expect(problem.locator("strong")).not_to_be_empty()
    expect(item.get_by_role("button", name=f"Dismiss {name}")).to_be_visible()
    page.screenshot(path=artifacts / f"refused-{name.replace('.', '-')}.png", full_page=True)


def test_the_key_prompt_after_a_401_then_a_wrong_key_then_the_right_one(
    anonymous: BrowserPage, web: WebServer, artifacts: Path
) -> None:
    page = anonymous.page
    anonymous.console.expect_status(401)
    open_page(page)
    prompt = page.locator("#auth")
    expect(prompt).to_be_visible()
    expect(page.locator("#auth-message")).to_contain_text("needs an API key")
    expect(page.locator("#list-problem code")).to_have_text("unauthorized")
    expect(page.get_by_role("textbox", name="API key")).to_be_focused()

    page.get_by_role("textbox", name="API key").fill("imgpipe_not_a_real_key")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#auth-message")).to_contain_text("refused this key")
    page.screenshot(path=artifacts / "wrong-key.png", full_page=True)

    page.get_by_role("textbox", name="API key").fill(web.key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#auth-message")).to_contain_text("sends an API key")
    expect(page.locator("#list-problem")).to_be_hidden()
    expect(page.get_by_role("button", name="Forget the key")).to_be_visible()


def test_load_more_pages_through_every_image(signed_in: BrowserPage, web: WebServer) -> None:
    with web.client() as client:
        for seed in range(PAGE_SIZE + 1):
            response = client.post(
                "/v1/images",
                files={"file": (f"page-{seed:02}.png", images.unique_png(seed + 500), "image/png")},
            )
            assert response.status_code == 202, response.text
        total = len(client.get("/v1/images", params={"limit": 200}).json()["items"])
    assert total > PAGE_SIZE

    page = signed_in.page
    open_page(page)
    cards = page.locator("li.card")
    more = page.get_by_role("button", name="Load more")
    expect(cards).to_have_count(PAGE_SIZE)
    clicks = 0
    while more.is_visible():
        shown = cards.count()
        more.click()
        expect(cards).not_to_have_count(shown)
        clicks += 1
    expect(cards).to_have_count(total)
    assert clicks == -(-total // PAGE_SIZE) - 1
    for seed in range(PAGE_SIZE + 1):
        expect(card(page, f"page-{seed:02}.png")).to_have_count(1)


def test_the_owner_downloads_reprocesses_renders_and_deletes(
    signed_in: BrowserPage, web: WebServer, artifacts: Path
) -> None:
    name = "lighthouse.jpg"
    original = encoded(scene(1000, 700, (30, 110, 190), (255, 230, 120)), "JPEG")
    with web.client() as client:
        accepted = client.post("/v1/images", files={"file": (name, original, "image/jpeg")})
        assert accepted.status_code == 202, accepted.text
        image_id = accepted.json()["id"]

    page = signed_in.page
    open_page(page)
    expect_done_with_thumbnails(page, name)
    item = card(page, name)

    # Download: the exact bytes, under the uploaded name.
    with page.expect_download() as downloading:
        item.get_by_role("button", name="Download original").click()
    download = downloading.value
    assert download.suggested_filename == name
    assert Path(download.path()).read_bytes() == original

    # Reprocess: the server takes it (202), the card follows it back to done.
    with web.client() as client:
        before = client.get(f"/v1/images/{image_id}").json()["updated_at"]
    with page.expect_response(lambda r: r.url.endswith("/reprocess")) as reprocessing:
        item.get_by_role("button", name="Reprocess").click()
    assert reprocessing.value.status == 202
    expect_done_with_thumbnails(page, name)
    with web.client() as client:
        assert client.get(f"/v1/images/{image_id}").json()["updated_at"] > before

    # Render URL: an option the render route would refuse shows its problem...
    signed_in.console.expect_status(400)
    item.locator("summary", has_text="Render URL").click()
    builder = item.locator(".render-builder")
    builder.get_by_label("Width").fill("99999")
    expect(builder.locator(".problem code")).to_have_text("bad_option")
    expect(builder.locator(".problem")).to_contain_text("'w'")
    expect(builder.get_by_role("button", name=f"Copy the render URL for {name}")).to_be_disabled()
    # ...and size, fit and format the route takes give a preview of exactly that render.
    builder.get_by_label("Width").fill("320")
    builder.get_by_label("Height").fill("200")
    builder.get_by_label("Fit").select_option("cover")
    builder.get_by_label("Crop").select_option("attention")
    builder.get_by_label("Format").select_option("png")
    preview = builder.locator("img.render-preview")
    expect(preview).to_have_attribute(
        "src", _has_all("w=320", "h=200", "format=png", "crop=attention")
    )
    assert wait_for_preview(preview) == (320, 200)
    expect(builder.locator(".hint")).to_contain_text("without a key")
    copy = builder.get_by_role("button", name=f"Copy the render URL for {name}")
    copy.click()
    expect(copy).to_have_text("Copied")  # the clipboard write has finished
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == builder.locator("input.render-url").input_value()
    assert copied.startswith(web.base_url + f"/v1/render/{image_id}?")
    rendered = httpx.get(copied, timeout=30)  # no key: the signature authorises it
    assert rendered.status_code == 200, rendered.text
    assert rendered.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(rendered.content)).size == (320, 200)
    page.screenshot(path=artifacts / "render-builder.png", full_page=True)

    # Delete: a second press confirms; the image is gone for the API too.
    remove = item.get_by_role("button", name="Delete")
    remove.click()
    expect(remove).to_have_text("Press again to delete")
    remove.click()
    expect(card(page, name)).to_have_count(0)
    with web.client() as client:
        assert client.get(f"/v1/images/{image_id}").status_code == 404
    open_page(page, reload=True)
    # The list has loaded (other cards, or the empty state) and this one is not in it.
    expect(page.locator("li.card, #empty:not([hidden])").first).to_be_visible()
    expect(card(page, name)).to_have_count(0)


def _has_all(*parts: str) -> re.Pattern[str]:
    """A pattern that matches text containing every one of ``parts``, in any order."""
    return re.compile("".join(f"(?=.*{re.escape(p)})" for p in parts))
