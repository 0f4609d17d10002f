#!/usr/bin/env python3
"""Drive the web page of `edgevl serve` in headless Chromium (Debian's `chromium`, through
playwright): load /, drop an image on the drop zone, see the tile grid and the token cost of
each `detail` (low < high), ask a question, see the prefill's progress shown and the answer
stream in (both recorded in the page by a MutationObserver, so no update is missed between two
polls), keep a screenshot.
Usage: server_page_check.py URL IMAGE.png SCREENSHOT.png
"""
import base64, sys

from playwright.sync_api import sync_playwright

url, image, shot = sys.argv[1:4]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DROP = """async (b64) => {
  const bin = atob(b64); const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], "picture.png", { type: "image/png" }));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
}"""
# Records every text the answer and the status show, as the page writes them (each write of `textContent` or
# `+=` puts in a new text node, so each record's added node holds that write's text, even when several writes
# come in one task).
WATCH = """() => {
  window.seen = { answer: [], status: [] };
  for (const id of ["answer", "status"]) {
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) window.seen[id].push(n.textContent);
    }).observe(document.getElementById(id), { childList: true });
  }
}"""

with open(image, "rb") as f:
    b64 = base64.b64encode(f.read()).decode()
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.evaluate(DROP, b64)
    page.wait_for_function("document.querySelectorAll('#costs tbody tr').length === 3", timeout=30000)
    rows = {r.get_attribute("data-detail"): r.inner_text().split("\t") for r in page.query_selector_all("#costs tbody tr")}
    tokens = {d: int(cells[-1]) for d, cells in rows.items()}
    print("tile grid and cost:", {d: (rows[d][1], tokens[d]) for d in rows})
    assert tokens["low"] < tokens["high"], tokens
    assert page.is_visible("#grid")
    page.wait_for_function("document.getElementById('upload').textContent.includes('encoding started')", timeout=30000)
    print("upload:", page.inner_text("#upload"))
    page.fill("#q", "What is in the picture?")
    page.evaluate(WATCH)
    page.click("#ask")
    page.wait_for_function("document.getElementById('status').textContent.includes('generated')", timeout=120000)
    seen = page.evaluate("window.seen")
    answer = page.inner_text("#answer")
    status = page.inner_text("#status")
    print("answer:", repr(answer[:120]))
    print("status:", status)
    progress = [s for s in seen["status"] if s.startswith("reading the prompt:")]
    print("progress shown:", progress[:3], "...", progress[-1:], f"({len(progress)})")
    assert answer.strip(), "no answer"
    assert "generated" in status and "image" in status, status
    # The image was encoded on upload, so only the prefill reports: from 0 to the prompt's tokens.
    prompt = int(status.split("prompt ")[1].split(" ")[0])
    assert progress and progress[0].startswith("reading the prompt: 0/") and f"{prompt}/{prompt}" in progress[-1], progress
    lengths = {len(a) for a in seen["answer"]}
    assert len(lengths) > 2, f"the answer did not stream (lengths seen: {sorted(lengths)})"
    assert not errors, errors
    page.screenshot(path=shot)
    browser.close()
print("server-page: 1 passed, 0 failed")
