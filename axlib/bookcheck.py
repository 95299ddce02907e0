"""Load every page of the built book in headless Chromium and check what a reader would see.

Serves ``<html>`` on 127.0.0.1 and opens every page at 1400 px and at 400 px with Debian's Chromium
(``/usr/bin/chromium``, driven by Playwright; no browser download). Per page it records console errors,
uncaught exceptions, failed requests, images that did not load, SVG figures shown below their native size at
1400 px (their fonts would read smaller than set), SVG figures shrunk so far at 400 px that their smallest
text (``axlib.plotting.MIN_FONT_PT`` at native size, held by the layout audit) reads below 9 pt, and elements
that stick out of the viewport without being inside a scroll container (at every width). On the landing page
it reads the coverage matrix; on the ledger it types a filter and counts the rows left. Screenshots of every
page at both widths go to ``<out>``.

Usage: ``python -m axlib.bookcheck _build/html [--out _build/screenshots]`` (exit 1 on any problem).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from axlib import plotting

CHROMIUM = "/usr/bin/chromium"
#: Flags for a closed network (no background connections, no first-run work); see the env notes.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
WIDTHS = (1400, 400)

#: JavaScript: elements whose box passes the right edge of the viewport and that no scroll container clips.
_OVERFLOW_JS = """(vw) => {
  const scrolls = (el) => { const s = getComputedStyle(el); return ['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX); };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= vw + 1) continue;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.position === 'fixed') continue;
    let p = el.parentElement, clipped = false;
    while (p && p !== document.body) {
      if (scrolls(p) && p.getBoundingClientRect().right <= vw + 1) { clipped = true; break; }
      p = p.parentElement;
    }
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + String(el.className).split(' ')[0];
    if (!clipped) out.push(`${name} right=${Math.round(r.right)}`);
  }
  return out;
}"""
_BROKEN_IMAGES_JS = "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
#: JavaScript: SVG figures drawn smaller than their native size (their fonts would read smaller than set).
#: Called with the smallest allowed scale (1 - 1 px per native width at 1400 px; 9 pt / MIN_FONT_PT at 400 px).
_SHRUNK_FIGURES_JS = """(least) => [...document.querySelectorAll('article img')]
  .filter(i => i.src.endsWith('.svg') && i.naturalWidth > 0 && i.getBoundingClientRect().width < least * i.naturalWidth - 1)
  .map(i => `${i.src.split('/').pop()} ${Math.round(i.getBoundingClientRect().width)} of ${i.naturalWidth} px`)"""
#: Smallest text as rendered on a phone, in points.
PHONE_MIN_PT = 9.0


@dataclass
class PageReport:
    path: str
    problems: list[str] = field(default_factory=list)


@dataclass
class BookReport:
    pages: list[PageReport]
    coverage_items: list[str]
    ledger_rows: tuple[int, int, int] | None  # (rows, rows left by the FAIL filter, of those not FAIL)
    screenshots: Path

    @property
    def problems(self) -> list[str]:
        return [f"{p.path}: {x}" for p in self.pages for x in p.problems]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@contextmanager
def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def pages_of(html: Path) -> list[str]:
    """Every content page of the built book (relative paths), landing page first."""
    skip = {"genindex.html", "search.html", "index.html"}
    found = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).parts[0].startswith("_") and p.name not in skip)
    return sorted(found, key=lambda p: (p != "book/intro.html", p))


def check_book(html: Path, out: Path, widths=WIDTHS, chromium: str = CHROMIUM) -> BookReport:
    """Open every page of ``html`` at each width; return what went wrong (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    reports = {rel: PageReport(rel) for rel in pages_of(html)}
    coverage_items, ledger_rows = [], None
    with serve(html) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for width in widths:
                context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page = context.new_page()
                events: list[str] = []
                page.on("console", lambda m, ev=events: ev.append(f"console {m.type}: {m.text}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e, ev=events: ev.append(f"uncaught: {e}"))
                page.on("requestfailed", lambda r, ev=events: ev.append(f"request failed: {r.url}"))
                page.on("response", lambda r, ev=events: ev.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
                for rel, report in reports.items():
                    events.clear()
                    page.goto(base + rel, wait_until="load")
                    page.evaluate("document.fonts.ready")
                    if rel == "book/claims.html":
                        page.wait_for_selector("#claims-ledger table.dataTable", timeout=15000)
                    report.problems += [f"{width}px {e}" for e in events]
                    report.problems += [f"{width}px image did not load: {src}" for src in page.evaluate(_BROKEN_IMAGES_JS)]
                    if width == widths[0]:
                        report.problems += [f"{width}px figure shown below its native size: {f}"
                                            for f in page.evaluate(_SHRUNK_FIGURES_JS, 1.0)]
                    else:
                        least = PHONE_MIN_PT / plotting.MIN_FONT_PT
                        report.problems += [f"{width}px figure shrunk below {least:.2f} of its native size (text under "
                                            f"{PHONE_MIN_PT:g} pt): {f}" for f in page.evaluate(_SHRUNK_FIGURES_JS, least)]
                    wide = page.evaluate(_OVERFLOW_JS, width)
                    report.problems += [f"{width}px wider than the viewport: {w}" for w in wide[:5]]
                    if rel == "book/intro.html" and width == widths[0]:
                        coverage_items = page.eval_on_selector_all(
                            "#coverage-matrix tbody tr", "rows => rows.map(r => r.cells[1].innerText.trim())")
                    shot = out / f"{rel.removesuffix('.html').replace('/', '__')}@{width}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    if rel == "book/claims.html" and width == widths[0]:  # after the screenshot: it types
                        ledger_rows = _filter_ledger(page)
                context.close()
        finally:
            browser.close()
    return BookReport(list(reports.values()), coverage_items, ledger_rows, out)


def _filter_ledger(page) -> tuple[int, int, int]:
    """Show every row and count them; type the FAIL mark into the search box; count the rows left and, among
    them, the rows whose *verdict* cell is not a FAIL."""
    rows = "#claims-ledger table.dataTable tbody tr:not(:has(td.dt-empty))"
    page.select_option("#claims-ledger select", "-1")
    before = page.locator(rows).count()
    verdict_col = page.eval_on_selector_all("#claims-ledger table.dataTable thead th",
                                            "hs => hs.map(h => h.innerText.trim()).indexOf('verdict')")
    page.fill("#claims-ledger input[type=search]", "✗")
    page.wait_for_timeout(300)
    verdicts = page.eval_on_selector_all(rows, f"rs => rs.map(r => r.cells[{verdict_col}].innerText)")
    return before, len(verdicts), sum("FAIL" not in v for v in verdicts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="the built book (e.g. _build/html)")
    ap.add_argument("--out", type=Path, default=None, help="screenshot folder (default: <html>/../screenshots)")
    args = ap.parse_args(argv)
    report = check_book(args.html, args.out or args.html.parent / "screenshots")
    print(json.dumps({"pages": len(report.pages), "coverage_rows": len(report.coverage_items),
                      "ledger_rows": report.ledger_rows, "screenshots": str(report.screenshots)}, indent=1))
    for p in report.problems:
        print(p, file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
