"""The built book in a real browser: headless Chromium on pages served from 127.0.0.1.

Needs the HTML first (`make test` builds it before running this file):
    python -m lmcnb.execute --profile smoke --out _build/smoke --build
Every page must load with no request leaving 127.0.0.1, no failed request and no script error.
On every chapter page each α-slider must render, and moving it or pressing Play must change the
frame shown; the page must read as a page of a book (title first, set-up collapsed, no blank
gaps, nothing wider than the column unless it scrolls visibly, frames as wide as the column).
Screenshots go to _build/screenshots/: <chapter>.png (the whole page) and the sliders' frames.
"""
from __future__ import annotations

import functools
import html
import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from lmcnb.book.execute import HTML, REPO, toc_chapters
from lmcnb.book.plots import COLUMN_PX
from lmcnb.book.widgets import CSS_CLASS

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
# A laptop's window: the theme's column is at its full width (lmcnb.plots.COLUMN_PX) from 1440 px.
VIEWPORT = {"width": 1440, "height": 1000}
SCREENSHOTS = REPO / "_build" / "screenshots"
MAX_GAP_PX = 60  # the tallest blank stretch allowed in an output area (a few lines)
STATE_SCRIPT = re.compile(r'<script type="application/vnd.jupyter.widget-state\+json">'
                          r"(.*?)</script>", re.S)
VIEW_SCRIPT = re.compile(r'<script type="application/vnd.jupyter.widget-view\+json">'
                         r"(.*?)</script>", re.S)


def toc_pages() -> list[str]:
    """Every page of _toc.yml as a path under the HTML root."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{p}.html" for p in pages]


def expected_sliders(page: Path) -> int:
    """How many α-slider views the page embeds (from its widget state and view tags)."""
    text = page.read_text()
    states = STATE_SCRIPT.findall(text)
    if not states:
        return 0
    models = json.loads(html.unescape(states[0]))["state"]
    views = [json.loads(html.unescape(v))["model_id"] for v in VIEW_SCRIPT.findall(text)]
    return sum(CSS_CLASS in models[m]["state"].get("_dom_classes", [])
               for m in views if m in models)


@pytest.fixture(scope="session")
def base_url() -> str:
    """The built book served on 127.0.0.1 by a thread of this process."""
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book in {HTML}: build it first with "
                    "`python -m lmcnb.execute --profile smoke --out _build/smoke --build` "
                    "(make test does)")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright hides scrollbars in headless mode; a reader sees them, and so must the test.
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True,
                              ignore_default_args=["--hide-scrollbars"])
        yield b
        b.close()


class Visit:
    """A page opened with every request not to 127.0.0.1 blocked and counted, and errors
    recorded."""

    def __init__(self, browser, url: str):
        self.external, self.failed, self.errors = [], [], []
        self.page = browser.new_page(viewport=VIEWPORT)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("response",
                     lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))
        self.page.route("**/*", self._route)
        self.page.goto(url, wait_until="load")

    def _route(self, route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def check_clean(self) -> None:
        assert self.external == [], f"requests left 127.0.0.1: {self.external}"
        assert self.failed == [], f"failed requests: {self.failed}"
        assert self.errors == [], f"script errors: {self.errors}"


def frame(box) -> str:
    """The src of the frame image shown in a slider box, once it has loaded."""
    img = box.locator("img.widget-image:visible")
    img.wait_for()
    img.evaluate("e => e.complete || new Promise(r => e.addEventListener('load', r))")
    assert img.evaluate("e => e.naturalWidth") > 0, "the frame image did not load"
    return img.get_attribute("src")


def wait_change(box, before: str, timeout_ms: int = 10_000) -> str:
    """Wait until the slider box shows a frame other than `before`; returns the new src."""
    try:
        box.page.wait_for_function(
            "([box, before]) => { const i = [...box.querySelectorAll('img.widget-image')]"
            ".find(e => e.offsetParent !== null); return i && i.src !== before; }",
            arg=[box.element_handle(), before], timeout=timeout_ms)
    except Exception as exc:
        raise AssertionError(f"the frame did not change (slider at index {index(box)})") from exc
    return frame(box)


def index(box) -> int:
    return round(float(box.locator(".noUi-handle").get_attribute("aria-valuenow")))


@pytest.mark.parametrize("page", toc_pages())
def test_page_is_offline_and_error_free(browser, base_url, page):
    visit = Visit(browser, base_url + page)
    if visit.page.locator("div.math, span.math").count():
        # MathJax typeset, from vendor/
        visit.page.wait_for_selector("mjx-container", timeout=15_000)
    visit.page.wait_for_load_state("networkidle")
    visit.check_clean()
    visit.page.close()


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_sliders_move_and_play(browser, base_url, chapter):
    page_file = HTML / "notebooks" / f"{chapter}.html"
    expected = expected_sliders(page_file)
    assert expected >= 1, f"{page_file} embeds no α-slider"
    visit = Visit(browser, f"{base_url}notebooks/{chapter}.html")
    page = visit.page
    colab = page.locator(f"a[href$='/notebooks/{chapter}.ipynb'][href^='https://colab.research.google.com/']")
    assert colab.count() >= 1, "no Colab launch link"
    boxes = page.locator(f".{CSS_CLASS}")
    boxes.nth(expected - 1).wait_for(timeout=30_000)
    assert boxes.count() == expected, f"{boxes.count()} of {expected} sliders rendered"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob(f"{chapter}-*.png"):
        old.unlink()
    for n in range(expected):
        box = boxes.nth(n)
        box.scroll_into_view_if_needed()
        handle = box.locator(".noUi-handle")
        last = round(float(handle.get_attribute("aria-valuemax")))
        assert last >= 2, "a slider needs at least three frames"
        shots = []

        def move(key: str, times: int, before: str, *, handle=handle, box=box) -> str:
            """Press `key` on the slider's handle `times` times, then wait for a new frame."""
            for _ in range(times):
                handle.press(key)
            return wait_change(box, before)

        def shoot(*, n=n, box=box, shots=shots) -> None:
            path = SCREENSHOTS / f"{chapter}-slider{n}-alpha{index(box):02d}.png"
            box.screenshot(path=str(path))
            shots.append(path)

        src = frame(box)
        assert index(box) == 0
        shoot()
        src = move("ArrowRight", last // 2, src)
        assert index(box) == last // 2
        shoot()
        src = move("End", 1, src)
        assert index(box) == last
        shoot()
        src = move("Home", 1, src)
        assert index(box) == 0
        box.locator(".widget-play button").first.click()  # Play
        src = wait_change(box, src)
        assert index(box) > 0, "Play changed the frame but not the slider"
        assert len({p.read_bytes() for p in shots}) == 3, (
            "the three screenshots are not all different")
    page.wait_for_load_state("networkidle")
    visit.check_clean()
    page.close()


# What a reader sees of a chapter page, measured in the browser (see test_chapter_reads_as_a_page).
LAYOUT = """([sliderClass, maxGap]) => {
  const article = document.querySelector("article.bd-article");
  const shown = e => e.checkVisibility({visibilityProperty: true})
    && e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0;
  const name = e => e.tagName.toLowerCase() + [...e.classList].map(c => "." + c).join("")
    + ' "' + (e.innerText || "").trim().replace(/\\s+/g, " ").slice(0, 70) + '"';
  const h1s = [...article.querySelectorAll("h1")];
  const first = [...article.querySelectorAll("*")].find(e => shown(e) && !e.contains(h1s[0])
    || e === h1s[0]);

  // Set-up cells: parameters, papermill's injected parameters, the Colab set-up.
  const code = c => [...c.querySelectorAll(".cell_input pre")];
  const setup = [...article.querySelectorAll("div.cell")].filter(c =>
    c.matches(".tag_parameters, .tag_injected-parameters")
    || code(c).some(p => p.textContent.includes("lmcnb.book.colab.setup(")));
  const openSetup = setup.filter(c => code(c).some(shown));

  // The tallest vertical stretch of each output area with no text, image or control in it.
  const gaps = [];
  for (const out of article.querySelectorAll("div.cell_output")) {
    if (!shown(out)) continue;
    const box = out.getBoundingClientRect();
    const rects = [];
    const walk = document.createTreeWalker(out, NodeFilter.SHOW_TEXT);
    for (let t; (t = walk.nextNode());) {
      if (!t.textContent.trim()
          || !t.parentElement.checkVisibility({visibilityProperty: true})) continue;
      const range = document.createRange();
      range.selectNodeContents(t);
      rects.push(...[...range.getClientRects()].filter(r => r.width > 0 && r.height > 0));
    }
    const media = "img, svg, canvas, video, iframe, button, input, .noUi-target";
    for (const m of out.querySelectorAll(media))
      if (shown(m)) rects.push(m.getBoundingClientRect());
    rects.sort((a, b) => a.top - b.top);
    let covered = box.top, gap = 0, at = box.top;
    for (const r of rects) {
      if (r.top - covered > gap) [gap, at] = [r.top - covered, covered];
      covered = Math.max(covered, r.bottom);
    }
    if (box.bottom - covered > gap) [gap, at] = [box.bottom - covered, covered];
    if (gap > maxGap) gaps.push(`${Math.round(gap)} px blank at y=${Math.round(at + scrollY)} in `
      + name(out).slice(0, 160));
  }

  // Anything wider than its box must be inside something that scrolls with a visible scrollbar.
  const scrolls = e => {
    const s = getComputedStyle(e);
    const bar = e.offsetHeight - e.clientHeight - parseFloat(s.borderTopWidth)
      - parseFloat(s.borderBottomWidth);
    return ["auto", "scroll"].includes(s.overflowX) && bar >= 4;
  };
  const clipped = [];
  for (const e of article.querySelectorAll("*")) {
    if (!shown(e) || e.scrollWidth <= e.clientWidth + 1) continue;
    let s = e;
    while (s !== article && !scrolls(s)) s = s.parentElement;
    if (s === article) clipped.push(`${name(e)}: ${e.scrollWidth} px in ${e.clientWidth} px`);
  }
  const page = document.scrollingElement;
  if (page.scrollWidth > page.clientWidth) clipped.push(`the page: ${page.scrollWidth} px wide`);

  // Table cells: none holds more than it shows, and a wrapping table (lmcnb-table wrap) fits
  // inside its output area with no scrolling at all.
  const cut = [];
  for (const t of article.querySelectorAll("div.cell_output table")) {
    if (!shown(t)) continue;
    for (const c of t.querySelectorAll("th, td"))
      if (shown(c) && c.scrollWidth > c.clientWidth + 1)
        cut.push(`${name(c)}: ${c.scrollWidth} px in a ${c.clientWidth} px cell`);
    const area = t.closest("div.cell_output");
    if (t.matches(".lmcnb-table.wrap")
        && t.getBoundingClientRect().right > area.getBoundingClientRect().right + 1)
      cut.push(`${name(t)}: a wrapping table ${Math.round(t.getBoundingClientRect().width)} px `
        + `wide in a ${Math.round(area.getBoundingClientRect().width)} px output area`);
  }

  const column = h1s.length ? h1s[0].parentElement.getBoundingClientRect().width : 0;
  const frames = [...article.querySelectorAll(`.${sliderClass} img.widget-image`)].filter(shown)
    .map(i => [Math.round(i.getBoundingClientRect().width), i.naturalWidth]);
  const sideways = [...article.querySelectorAll(`.${sliderClass}, .${sliderClass} *`)]
    .filter(e => shown(e) && e.scrollWidth > e.clientWidth + 1)
    .map(e => `${name(e)}: ${e.scrollWidth} px in ${e.clientWidth} px`);
  return {h1s: h1s.length, first: first ? name(first) : null, firstIsTitle: first === h1s[0],
          openSetup: openSetup.map(name), nSetup: setup.length, gaps, clipped, cut, column,
          frames, sideways};
}"""


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_reads_as_a_page(browser, base_url, chapter, capsys):
    """Title first, set-up collapsed, no blank output areas, nothing cut off at the right edge,
    no table cell cut off, α-slider frames as wide as the column; a screenshot of the whole
    page."""
    expected = expected_sliders(HTML / "notebooks" / f"{chapter}.html")
    visit = Visit(browser, f"{base_url}notebooks/{chapter}.html")
    page = visit.page
    boxes = page.locator(f".{CSS_CLASS}")
    for n in range(expected):
        frame(boxes.nth(n))  # rendered, with its first frame loaded
    if page.locator("div.math, span.math").count():
        page.wait_for_selector("mjx-container", timeout=15_000)
    page.wait_for_load_state("networkidle", timeout=60_000)  # long pages, on a loaded machine
    layout = page.evaluate(LAYOUT, [CSS_CLASS, MAX_GAP_PX])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{chapter}.png"
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"\n{chapter}: screenshot of the page in {shot}")
    visit.check_clean()
    page.close()

    problems = []  # all of them at once: fixing a page takes a rebuild
    if layout["h1s"] != 1:
        problems.append(f"{layout['h1s']} h1 headings: a chapter has one title")
    if not layout["firstIsTitle"]:
        problems.append(f"the page opens with {layout['first']}, not the chapter's title: cell 0 "
                        "must be the markdown title, the set-up cells after it (hide-cell)")
    if layout["nSetup"] < 3:
        problems.append(f"{layout['nSetup']} set-up cells found; expected the parameters, the "
                        "injected parameters and the Colab set-up")
    problems += [f"set-up cell shown open: {c}" for c in layout["openSetup"]]
    problems += [f"blank output area: {g}" for g in layout["gaps"]]
    problems += [f"wider than the column, no visible scrollbar: {c}" for c in layout["clipped"]]
    problems += [f"table cell cut off: {c}" for c in layout["cut"]]
    column = layout["column"]
    if abs(column - COLUMN_PX) > 2:
        problems.append(f"the column is {column} px at {VIEWPORT}, frames are drawn for "
                        f"{COLUMN_PX} (lmcnb.plots.COLUMN_PX): measure the theme again")
    if len(layout["frames"]) != expected:
        problems.append(f"{len(layout['frames'])} of {expected} slider frames shown")
    problems += [f"a slider frame is {width} px wide (drawn at {natural}) in a {column} px column"
                 for width, natural in layout["frames"] if abs(width - column) > 0.1 * column]
    problems += [f"a slider scrolls sideways: {e}" for e in layout["sideways"]]
    assert not problems, "\n".join(problems)
