"""Reports opened in a real browser (headless chromium, installed in the session set-up: conftest.install_chromium):
every figure decodes (naturalWidth > 0), the page logs nothing to the console and raises no error (a data string
that escaped into markup as a script would), and a full-page screenshot is saved next to the report for a person to
look at. No extra Python package: chromium's --dump-dom prints the DOM after a check script (injected into a copy of
index.html) has written its findings into it, --screenshot takes the picture, --enable-logging=stderr the console."""

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from cpugrpo.report.machine import write_report

from .report_data import make_machine, trial_row

ROOT = Path(__file__).resolve().parents[1]
CHECK_ID = "cpugrpo-browser-check"
# Runs before the report's own markup: records console errors/warnings, script errors, failed loads (capture phase)
# and CSP violations; on load writes what it found, the images and the page size into a <pre> for --dump-dom.
CHECK = """<script>(() => {
  const errors = [];
  for (const level of ["error", "warn"]) {
    const orig = console[level];
    console[level] = (...a) => { errors.push(level + ": " + a.join(" ")); orig.apply(console, a); };
  }
  window.addEventListener("error", e => errors.push("error event: " +
    (e.message || (e.target && (e.target.src || e.target.href || e.target.tagName)) || e.type).slice(0, 200)), true);
  window.addEventListener("unhandledrejection", e => errors.push("unhandled rejection: " + e.reason));
  document.addEventListener("securitypolicyviolation", e => errors.push("CSP: " + e.violatedDirective));
  window.addEventListener("load", () => {
    const imgs = [...document.images];
    const out = {images: imgs.length, errors,
                 broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 80)),
                 sizes: imgs.map(i => [i.alt, i.naturalWidth, i.naturalHeight, i.width, i.height]),
                 scripts: document.scripts.length - 1,
                 width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
                 viewport: window.innerWidth};
    const pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();</script>""" % CHECK_ID
WIDTH = 1280


def _chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--disable-extensions", f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
           *args]
    if os.geteuid() == 0:
        cmd.insert(2, "--no-sandbox")  # chromium refuses to run as root with its sandbox (CI runs as root)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"chromium failed ({p.returncode}): {p.stderr[-1500:]}"
    return p


def check_in_browser(binary: str, index: Path) -> dict:
    """Open a checking copy of ``index`` headless: the check script's findings, the page's console lines, and a
    full-page screenshot (``<report dir>/screenshot.png``)."""
    page = index.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>(\s*<meta charset=[^>]*>)?", page, re.I)
    assert head, f"{index} has no <head>"
    probe = index.with_name(".browser-check.html")  # same folder: relative links resolve as in index.html
    probe.write_text(page[:head.end()] + CHECK + page[head.end():], encoding="utf-8")
    tmp = index.parent
    try:
        p = _chromium(binary, tmp, "--virtual-time-budget=10000", f"--window-size={WIDTH},900", "--dump-dom",
                      probe.as_uri())
    finally:
        probe.unlink()
    m = re.search(f'<pre id="{CHECK_ID}">(.*?)</pre>', p.stdout, re.S)
    assert m, f"the check script never reported (page did not load?): {p.stdout[-500:]} {p.stderr[-1000:]}"
    found = json.loads(html.unescape(m.group(1)))
    found["console"] = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]
    shot = index.with_name("screenshot.png")
    # the window as tall as the page: one picture of all of it (chromium's limit is about 16k pixels)
    _chromium(binary, tmp, f"--window-size={WIDTH},{min(found['height'] + 20, 16000)}", f"--screenshot={shot}",
              index.as_uri())
    found["screenshot"] = shot
    return found


def _assert_clean(found: dict, n_images: int) -> None:
    assert found["images"] == n_images, found["sizes"]
    assert not found["broken"], f"images that did not decode: {found['broken']}"
    assert all(nw > 0 and nh > 0 and w > 0 and h > 0 for _, nw, nh, w, h in found["sizes"]), found["sizes"]
    assert not found["errors"], f"errors in the page: {found['errors']}"
    assert not found["console"], f"console messages: {found['console']}"
    assert found["scripts"] == 0, "the report holds a <script> (data escaped into markup?)"
    png = found["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_synthetic_report_renders_in_a_browser(chromium, tmp_path):
    """The report tests' fixture rows (a failed trial's reason holds a <script>: escaped, it never runs) and a torn
    last line (its warning shows at the top)."""
    rows = [trial_row(0, threads=1, sps=27.0), trial_row(1), trial_row(2, rollout="int8", sps=55.0, rss=950),
            trial_row(3, prompts=8, sps=52.0, rss=1300), trial_row(4, status="failed"),
            trial_row(5, rollout="int8", tag="tune-gate", accuracy=0.45), trial_row(6, tag="tune-gate", accuracy=0.46)]
    make_machine(tmp_path, "browser-m", rows)
    with open(tmp_path / "results" / "browser-m" / "trials.jsonl", "a") as fh:
        fh.write('{"torn": ')
    path = write_report("browser-m", tmp_path / "profiles", tmp_path / "results", tmp_path / "no-asv",
                        tmp_path / "reports")
    found = check_in_browser(chromium, Path(path))
    _assert_clean(found, n_images=8)
    assert "Warning: 1 unreadable line" in Path(path).read_text() and path.warnings


COMMITTED = sorted(p.parent.name for p in (ROOT / "profiles").glob("*/hardware.json")
                   if (ROOT / "results" / p.parent.name / "trials.jsonl").exists())


@pytest.mark.parametrize("machine_id", COMMITTED)
def test_committed_report_renders_in_a_browser(chromium, tmp_path, machine_id):
    """Each machine's committed data, rendered afresh by this code into tmp_path (the committed reports/ untouched)."""
    path = write_report(machine_id, ROOT / "profiles", ROOT / "results", tmp_path / "no-asv", tmp_path / "reports")
    found = check_in_browser(chromium, Path(path))
    _assert_clean(found, n_images=8)


def test_the_browser_check_catches_a_broken_image_and_a_console_error(chromium, tmp_path):
    """The harness itself: a page with an undecodable image and a script that logs an error fails every check."""
    index = tmp_path / "index.html"
    index.write_text("<!doctype html><html><head><meta charset='utf-8'></head><body><h1>bad</h1>"
                     "<img alt='broken' src='data:image/png;base64,AAAA'><img alt='ok' src='data:image/png;base64,"
                     "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='>"
                     "<script>console.error('from the page')</script></body></html>")
    found = check_in_browser(chromium, index)
    assert found["images"] == 2 and found["broken"] == ["broken"]
    assert any("from the page" in e for e in found["errors"]) and any("from the page" in c for c in found["console"])
    assert found["scripts"] == 1
    with pytest.raises(AssertionError):
        _assert_clean(found, n_images=2)


def test_a_failed_chromium_install_fails_with_the_fix(tmp_path, monkeypatch):
    """No chromium and no network: the session set-up fails (never skips) with what went wrong and the fix."""
    from .conftest import install_chromium

    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho \"E: Failed to fetch: Temporary failure resolving 'deb.debian.org'\" >&2\n"
                    "exit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on it; apt-get is the failing stand-in
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)apt-get .*update.* failed with exit code 100 \(no network"
                                                    r"\?\): .*Temporary failure resolving.*apt-get install -y "
                                                    r"chromium"):
        install_chromium()
