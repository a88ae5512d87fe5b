"""The built website, read in a real browser with no network beyond the site itself.

Runs only when LLMINFRA_SITE names a built site (`make site-test` sets it to _build/html
after `make book`; `.ci/run` does the same), so `make test` and `make unit` skip it.
Playwright (Python) drives Debian's `chromium`, found on PATH: never `playwright install`.

The site is served by a real HTTP server on a free port of 127.0.0.1 and every request to
any other host is aborted, as for a reader offline or behind a firewall that drops CDNs.
Every page is loaded once at desktop width and once at a phone's 390 px, and checked for:
no console error and no failed request; internal links and anchors that resolve; images
that load; math typeset wherever the page has TeX (and MathJax loaded nowhere else);
widgets rendered from their embedded state; no horizontal overflow on the phone; launch
buttons on lab pages only, pointing at the lab's notebook; lab pages that open with their
title; Chinese text marked lang="zh-CN". Search is tried with several queries, and
screenshots of key pages, light and dark, are saved under _build/site-screenshots/.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("LLMINFRA_SITE", "")).resolve() if os.environ.get("LLMINFRA_SITE") else None
if SITE is None:
    pytest.skip("browser tests of the built site: run `make site-test` (LLMINFRA_SITE unset)", allow_module_level=True)
if not (SITE / "intro.html").is_file():
    raise RuntimeError(f"LLMINFRA_SITE={SITE} holds no built book (intro.html); run `make book` first")

from playwright.sync_api import sync_playwright  # noqa: E402  (only when the site tests run)

SCREENSHOTS = ROOT / "_build" / "site-screenshots"
PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
               if not p.relative_to(SITE).parts[0].startswith("_"))
LABS = [p for p in PAGES if p.startswith("labs/")]
REPO = "llminfra-book/llminfra-book"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-default-apps", "--disable-sync",
                 "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter"]
CJK = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
TIMEOUT_MS = 90_000   # generous: a loaded 2-core machine takes seconds per page


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    timeout = 30   # a socket the browser opened and never used does not hold a thread for ever

    def log_message(self, *args):   # keep pytest's output readable
        pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError):   # the browser closed or dropped a connection
            pass


@pytest.fixture(scope="session")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not on PATH (apt-get install -y chromium); never `playwright install`"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _new_page(browser, base: str, viewport: dict, dark: bool = False):
    """A page in a fresh context that aborts every request to another host and records
    console errors, page errors, failed requests and blocked hosts."""
    context = browser.new_context(viewport=viewport, service_workers="block")
    log = {"errors": [], "failed": [], "blocked": []}
    host = urlparse(base).netloc

    def route(r):
        if urlparse(r.request.url).netloc == host:
            r.continue_()
        else:
            log["blocked"].append(r.request.url)
            r.abort()

    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", route)
    if dark:
        context.add_init_script("localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
    page = context.new_page()
    log["pending"] = pending = {}
    page.on("request", lambda r: pending.__setitem__(r, r.url))
    page.on("requestfinished", lambda r: pending.pop(r, None))
    page.on("requestfailed", lambda r: pending.pop(r, None))
    page.on("console", lambda m: m.type == "error" and log["errors"].append(f"console: {m.text} @ {m.location}"))
    page.on("pageerror", lambda e: log["errors"].append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: log["failed"].append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and log["failed"].append(f"{r.url} (HTTP {r.status})"))
    return context, page, log


def _load(page, url: str, log: dict) -> None:
    """Go to `url` and wait until no request has been in flight for half a second; a request
    still unanswered after TIMEOUT_MS counts as failed."""
    page.goto(url, wait_until="load")
    deadline, quiet = time.monotonic() + TIMEOUT_MS / 1000, 0
    while time.monotonic() < deadline and quiet < 2:
        page.wait_for_timeout(250)
        quiet = 0 if log["pending"] else quiet + 1
    log["failed"] += [f"{u} (no answer in {TIMEOUT_MS // 1000} s)" for u in log["pending"].values()]
    log["pending"].clear()


_SETTLE = """async () => {
  const settle = async () => {
    // math: MathJax 3 typesets once its startup promise resolves
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
    // images: load lazy ones too, then wait for each
    const imgs = Array.from(document.images);
    imgs.forEach(i => { i.loading = 'eager'; });
    await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  };
  // what has not settled in 30 s is reported by the tests (raw TeX, broken images)
  await Promise.race([settle(), new Promise(r => setTimeout(r, 30000))]);
}"""

_WIDGETS_DONE = """() => Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
  .every(s => s.previousElementSibling && s.previousElementSibling.querySelector('.jupyter-widgets, .widget-output'))"""

_FACTS = """() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const cjk = new RegExp('[__CJK__]');
  const unmarked = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const n = walker.currentNode, el = n.parentElement;
    if (!el || !cjk.test(n.data) || el.closest('script, style, head, title')) continue;
    const lang = el.closest('[lang]');
    if (!lang || !lang.getAttribute('lang').startsWith('zh')) unmarked.push(n.data.trim().slice(0, 40));
  }
  const maths = Array.from(article.querySelectorAll('.math'));
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  const rendered = Array.from(views).filter(s => {
    const box = s.previousElementSibling;
    return box && box.querySelector('.jupyter-widgets, .widget-output') && box.getBoundingClientRect().height > 10;
  });
  const heading = article.querySelector('h1');
  const beforeTitle = heading ? Array.from(article.querySelectorAll('.cell')).filter(
      c => c.compareDocumentPosition(heading) & Node.DOCUMENT_POSITION_FOLLOWING) : [];
  return {
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    head_scripts: Array.from(document.head.querySelectorAll('script[src]')).map(s => ({src: s.src,
        blocking: !s.async && !s.defer && s.type !== 'module'})),
    mathjax_loaded: Array.from(document.scripts).some(s => /mathjax/i.test(s.src)),
    maths: maths.length,
    raw_maths: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    views: views.length, rendered: rendered.length,
    launch: Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
        .filter(h => /colab\\.research\\.google\\.com|mybinder\\.org/.test(h)),
    title: heading ? heading.textContent.trim() : '',
    cells_before_title: beforeTitle.length,
    nbval_markers: (article.textContent.match(/NBVAL_[A-Z_]+/g) || []).length,
    cjk_unmarked: unmarked,
    sideways: Array.from(article.querySelectorAll('pre, .pst-scrollable-table-container, table'))
        .filter(e => e.scrollWidth > e.clientWidth + 2 && e.getBoundingClientRect().height > 0)
        .map(e => `${e.tagName.toLowerCase()}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}: ${e.textContent.slice(0, 50)}`),
  };
}""".replace("__CJK__", CJK)

_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  if (document.documentElement.scrollWidth > width + 1) {
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right > width + 1 && r.width > 0) {
        let clipped = false;
        for (let p = el.parentElement; p; p = p.parentElement) {
          const o = getComputedStyle(p).overflowX;
          if (o === 'auto' || o === 'scroll' || o === 'hidden') { clipped = true; break; }
        }
        if (!clipped) wide.push(`${el.tagName.toLowerCase()}.${el.className} right=${Math.round(r.right)}`);
      }
    }
  }
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 8)};
}"""


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\s(?:id|name)="([^"]+)"', text))


@pytest.fixture(scope="session")
def visits(browser, server):
    """Each page loaded once at desktop width and once on a phone: what the tests check."""
    cache: dict[tuple[str, str], dict] = {}

    def visit(page_path: str, viewport: str = "desktop") -> dict:
        key = (page_path, viewport)
        if key not in cache:
            context, page, log = _new_page(browser, server, DESKTOP if viewport == "desktop" else PHONE)
            try:
                _load(page, server + page_path, log)
                page.evaluate(_SETTLE)
                if page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count():
                    try:
                        page.wait_for_function(_WIDGETS_DONE, timeout=30_000)
                    except Exception:   # reported by test_widgets_render_from_their_embedded_state
                        pass
                facts = page.evaluate(_FACTS) if viewport == "desktop" else {}
                facts["overflow"] = page.evaluate(_OVERFLOW)
                facts.update(log)
            finally:
                context.close()
            cache[key] = facts
        return cache[key]

    return visit


@pytest.mark.parametrize("page_path", PAGES)
def test_no_console_error_no_failed_request_no_other_host(visits, page_path):
    facts = visits(page_path)
    assert not facts["blocked"], f"{page_path} asked another host for: {facts['blocked']}"
    assert not facts["errors"], f"{page_path}: {facts['errors']}"
    assert not facts["failed"], f"{page_path}: failed requests {facts['failed']}"


@pytest.mark.parametrize("page_path", PAGES)
def test_no_script_in_head_from_another_host(visits, server, page_path):
    for script in visits(page_path)["head_scripts"]:
        assert script["src"].startswith(server), f"{page_path}: <head> loads {script['src']}"


@pytest.mark.parametrize("page_path", PAGES)
def test_internal_links_and_anchors_resolve(visits, server, page_path):
    broken = []
    for href in visits(page_path)["links"]:
        if not href.startswith(server):
            continue
        url, fragment = urldefrag(href)
        rel = unquote(urlparse(url).path).lstrip("/")
        target = SITE / rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(href)
        elif fragment and target.suffix == ".html" and unquote(fragment) not in _ids(target):
            broken.append(href)
    assert not broken, f"{page_path}: {len(broken)} broken internal links, e.g. {sorted(set(broken))[:8]}"


@pytest.mark.parametrize("page_path", PAGES)
def test_every_image_loads(visits, page_path):
    bad = [i["src"] for i in visits(page_path)["images"] if not i["ok"]]
    assert not bad, f"{page_path}: images that did not load: {bad[:8]}"


@pytest.mark.parametrize("page_path", PAGES)
def test_math_is_typeset_where_there_is_tex_and_mathjax_loaded_only_there(visits, page_path):
    facts = visits(page_path)
    if facts["maths"]:
        assert facts["mathjax_loaded"], f"{page_path} has TeX but no MathJax"
        assert not facts["raw_maths"], f"{page_path}: TeX left raw: {facts['raw_maths'][:5]}"
    else:
        assert not facts["mathjax_loaded"], f"{page_path} has no math but loads MathJax"


@pytest.mark.parametrize("page_path", PAGES)
def test_widgets_render_from_their_embedded_state(visits, page_path):
    facts = visits(page_path)
    assert facts["rendered"] == facts["views"], (
        f"{page_path}: {facts['rendered']} of {facts['views']} widget views rendered")


@pytest.mark.parametrize("page_path", PAGES)
def test_code_outputs_and_tables_wrap_instead_of_scrolling_sideways(visits, page_path):
    sideways = visits(page_path)["sideways"]
    assert not sideways, f"{page_path}: {len(sideways)} blocks scroll sideways: {sideways[:5]}"


@pytest.mark.parametrize("page_path", PAGES)
def test_no_horizontal_overflow_on_a_phone(visits, page_path):
    o = visits(page_path, "phone")["overflow"]
    assert o["scroll"] <= o["width"] + 1, f"{page_path} is {o['scroll']} px wide at {o['width']} px: {o['wide']}"


@pytest.mark.parametrize("page_path", PAGES)
def test_launch_buttons_only_on_labs_and_pointing_at_the_notebook(visits, page_path):
    launch = visits(page_path)["launch"]
    if not page_path.startswith("labs/"):
        assert not launch, f"{page_path} has launch buttons {launch}"
        return
    notebook = page_path.replace(".html", ".ipynb")
    colab = [h for h in launch if "colab.research.google.com" in h]
    binder = [h for h in launch if "mybinder.org" in h]
    assert colab == [f"https://colab.research.google.com/github/{REPO}/blob/main/{notebook}"], colab
    assert len(binder) == 1 and binder[0].startswith(f"https://mybinder.org/v2/gh/{REPO}/main?")
    assert binder[0].endswith(f"urlpath=tree/{notebook}"), binder


@pytest.mark.parametrize("page_path", LABS)
def test_lab_pages_open_with_their_title_and_show_no_test_markers(visits, page_path):
    facts = visits(page_path)
    assert facts["title"].startswith("Lab "), facts["title"]
    assert facts["cells_before_title"] == 0, f"{page_path}: {facts['cells_before_title']} cell(s) above the title"
    assert facts["nbval_markers"] == 0, f"{page_path} shows nbval markers to the reader"


@pytest.mark.parametrize("page_path", PAGES)
def test_chinese_text_is_marked_zh_cn(visits, page_path):
    unmarked = visits(page_path)["cjk_unmarked"]
    assert not unmarked, f"{page_path}: Chinese text without lang=zh-CN: {unmarked[:5]}"


@pytest.mark.parametrize("query", ["roofline", "tensor parallelism", "KV cache", "quantization", "speculative decoding"])
def test_search_returns_results(browser, server, query):
    context, page, log = _new_page(browser, server, DESKTOP)
    try:
        _load(page, f"{server}search.html?q={query.replace(' ', '+')}", log)
        page.wait_for_selector("#search-results ul.search li", timeout=30_000)
        assert page.locator("#search-results ul.search li").count() >= 1
        assert not log["errors"] and not log["failed"] and not log["blocked"], log
    finally:
        context.close()


KEY_PAGES = ["intro.html", "chapters/02-gpu-mental-model.html", "labs/02-gpu-mental-model.html", "bibliography.html"]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("page_path", [p for p in KEY_PAGES if p in PAGES])
def test_screenshots_of_key_pages(browser, server, page_path, dark):
    """Saved for CI's artifacts; fails only if the page cannot be shown in that mode."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context, page, log = _new_page(browser, server, viewport, dark=dark)
        try:
            _load(page, server + page_path, log)
            page.evaluate(_SETTLE)
            assert page.evaluate("document.documentElement.dataset.theme") == ("dark" if dark else "light")
            stem = page_path.replace("/", "_").removesuffix(".html")
            page.screenshot(path=str(SCREENSHOTS / f"{stem}-{name}-{'dark' if dark else 'light'}.png"))
        finally:
            context.close()
