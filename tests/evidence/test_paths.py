"""Committed data carry no machine-specific paths: a row names a model by preset and cache key, not by where a home
directory or a temp directory put it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MACHINE_PATHS = re.compile(r"/(?:root|home|Users|tmp)/")
EMBEDDED = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")  # figures inside reports: only the text matters


def committed_text_files():
    for top in ("profiles", "results", "reports"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix != ".png":
                yield path


def test_no_home_or_temp_paths_in_committed_data():
    files = list(committed_text_files())
    assert any(f.name == "trials.jsonl" for f in files) and any(f.name == "index.html" for f in files)
    found = []
    for path in files:
        text = EMBEDDED.sub("", path.read_text(encoding="utf-8", errors="replace"))
        for n, line in enumerate(text.splitlines(), 1):
            m = MACHINE_PATHS.search(line)
            if m:
                found.append(f"{path.relative_to(ROOT)}:{n}: ...{line[max(0, m.start() - 40):m.end() + 40]}...")
    assert not found, "\n".join(found[:10])


def test_the_check_finds_a_home_path():
    row = '{"model": "/home/ann/.cache/cpugrpo/models/tiny-v1-seed0-e138c849ed"}'
    assert MACHINE_PATHS.search(row) and not MACHINE_PATHS.search('{"model": "tiny"}')
    assert not MACHINE_PATHS.search(EMBEDDED.sub("", "<img src='data:image/png;base64,AAAA/tmp/BBBB'>"))
