#!/usr/bin/env python3
"""Screenshots of the key docs pages in headless Chromium, and a check of each.

``make docs-shots`` builds the docs, then for every page in :data:`PAGES`:

* takes a screenshot (``docs/_build/shots/<page>.png``, 1400x1000, as a
  reader's browser window shows it);
* loads a copy of the page with a small script appended that measures, after
  layout, every code block (``pre``) and the page itself: a code block whose
  content is wider than its box (it needs a horizontal scrollbar, so a reader
  sees it clipped) or a page wider than the window fails, as does a page
  whose title or main text did not render, or an image that did not load.

Exit code 1 with a line per problem; 0 prints one line per page.
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
HTML = ROOT / "docs" / "_build" / "html"
SHOTS = ROOT / "docs" / "_build" / "shots"
PAGES = [
    "index",
    "install",
    "quickstart",
    "migrating",
    "topology",
    "output",
    "storage",
    "reference/execution",
    "reference/states",
]
WIDTH, HEIGHT = 1400, 1000

CHECK = """
<script>
window.addEventListener('load', function () {
  var out = {title: document.title,
             text: (document.querySelector('article') || document.body).innerText.length,
             page: [document.documentElement.scrollWidth, window.innerWidth],
             clipped: [], images: []};
  document.querySelectorAll('pre').forEach(function (pre) {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      var line = pre.innerText.split('\\n').reduce(function (a, b) {
        return a.length >= b.length ? a : b;
      }, '');
      out.clipped.push([pre.scrollWidth, pre.clientWidth, line.slice(0, 100)]);
    }
  });
  document.querySelectorAll('img').forEach(function (img) {
    out.images.push([img.getAttribute('src'), img.naturalWidth, img.getBoundingClientRect().width]);
  });
  var el = document.createElement('pre');
  el.id = 'kvm-shot-result';
  el.textContent = JSON.stringify(out);
  document.body.appendChild(el);
});
</script>
"""


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium: apt-get install chromium (make docs-shots does)")


def run(browser, *args):
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def main():
    browser = chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for page in PAGES:
        html = HTML / f"{page}.html"
        if not html.exists():
            problems.append(f"{page}: {html} was not built (make docs)")
            continue
        shot = SHOTS / (page.replace("/", "-") + ".png")
        run(browser, f"--screenshot={shot}", html.as_uri())
        if not shot.exists() or shot.stat().st_size < 10_000:
            problems.append(f"{page}: no screenshot")
        # the same page with the measuring script, next to the original (relative links still work)
        with tempfile.NamedTemporaryFile(
            "w", suffix=".html", dir=html.parent, delete=False
        ) as probe:
            probe.write(html.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"))
        try:
            dom = run(browser, "--dump-dom", pathlib.Path(probe.name).as_uri()).stdout
        finally:
            pathlib.Path(probe.name).unlink()
        match = re.search(r'<pre id="kvm-shot-result">(.*?)</pre>', dom, re.DOTALL)
        if not match:
            problems.append(f"{page}: the page did not finish loading in Chromium")
            continue
        result = json.loads(
            match.group(1)
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
            .replace("&quot;", '"')
        )
        if "salt-kvm" not in result["title"] or result["text"] < 200:
            problems.append(
                f"{page}: did not render (title {result['title']!r}, {result['text']} characters)"
            )
        if result["page"][0] > result["page"][1]:
            problems.append(
                f"{page}: the page is {result['page'][0]} px wide in a {result['page'][1]} px "
                "window"
            )
        for wide, box, line in result["clipped"]:
            problems.append(f"{page}: a code block is {wide} px wide in a {box} px box: {line!r}")
        for src, natural, shown in result["images"]:
            if natural == 0:
                problems.append(f"{page}: image {src} did not load")
            elif "topology" in (src or "") and shown < natural * 0.95:
                problems.append(f"{page}: {src} shown at {shown:.0f} px of its {natural} px")
        print(
            f"{page}: {shot.relative_to(ROOT)}, {len(result['clipped'])} clipped code blocks, "
            f"{len(result['images'])} images"
        )
    for line in problems:
        print("FAIL", line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
