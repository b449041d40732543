"""Render an HTML report in a real headless Chromium (Debian's `chromium` package) and read
back what the browser decoded and laid out: images, captions, sections and every table."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

#: Appended to a copy of a report: writes what Chromium decoded and laid out as JSON into a
#: <pre id="probe">. A table cell is its text, or for a cut text {shown, title, whole}.
PROBE = """<script>
const out = {
  images: [...document.images].map(i => ({alt: i.alt, ok: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
  captions: Object.fromEntries([...document.querySelectorAll("figure")].map(f => [f.querySelector("img").alt, f.querySelector("figcaption").textContent])),
  sections: Object.fromEntries([...document.querySelectorAll("section")].map(s => [s.id, s.querySelector("h2").textContent])),
  tables: {},
};
for (const t of document.querySelectorAll("table")) {
  const head = [...t.tHead.rows[0].cells].map(c => c.textContent);
  out.tables[t.id] = [...t.tBodies[0].rows].map(r => Object.fromEntries([...r.cells].map((c, i) => {
    const d = c.querySelector("details");
    const s = d && d.querySelector("summary");
    return [head[i], d ? {shown: s.textContent, title: s.title, whole: d.querySelector("div").textContent} : c.textContent];
  })));
}
const pre = document.createElement("pre");
pre.id = "probe";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def chromium(*args: str, profile: Path) -> str:
    """Run headless Chromium with a fresh profile, no network chatter; return its stdout."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def rendered(page: str, tmp: Path) -> dict[str, Any]:
    """What Chromium made of ``page`` (an HTML string): ``images``, ``captions`` (by image
    alt), ``sections`` (id to heading) and ``tables`` (id to rows of column -> cell)."""
    probe = tmp / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), profile=tmp / "probe-profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[:1000]
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, shot: Path, tmp: Path, height: int = 3600) -> None:
    """A full-width screenshot of the file ``page`` saved at ``shot``."""
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    chromium(
        f"--window-size=1200,{height}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        page.as_uri(),
        profile=tmp / "shot-profile",
    )
