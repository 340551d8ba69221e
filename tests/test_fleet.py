"""A fleet of machines (README "A fleet of machines"): each machine's clone holds only its own folders
(profiles/<id>/, results/<id>/), so merging clones is a union of folders, and `cpugrpo compare` reads the merged tree.
Built here from three committed machines, each copied into its own "clone" as if it had come from that machine."""

import json
import shutil
from pathlib import Path

from cpugrpo.cli.main import main
from cpugrpo.core.store import TrialStore
from cpugrpo.report.compare import gather

ROOT = Path(__file__).resolve().parents[1]
FLEET = ("intel-emeraldrapids-avx512bf16-2c-24g-6635ca", "intel-emeraldrapids-avx2-2c-24g-ea1686-emu",
         "intel-emeraldrapids-avx512bf16-1c-24g-bebeb7-emu")
BIG = FLEET[0]


def clone(at: Path, mid: str, rows: list[str] | None = None) -> Path:
    """One machine's clone after its run: its profiles/<id>/ and results/<id>/ (``rows``: its trials.jsonl lines)."""
    for top in ("profiles", "results"):
        shutil.copytree(ROOT / top / mid, at / top / mid)
    if rows is not None:
        (at / "results" / mid / "trials.jsonl").write_text("".join(rows))
    return at


def files(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}


def merge(clones: list[Path], fleet: Path) -> None:
    """The README's merge: copy each clone's machine folders into one tree; where a machine's trials.jsonl arrives
    from a second clone, append its lines (`cat >>`, what git's merge=union in .gitattributes also does)."""
    for c in clones:
        for rel in sorted(files(c)):
            dst = fleet / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() and dst.name.endswith(".jsonl"):
                with open(dst, "a") as fh:
                    fh.write((c / rel).read_text())
            else:
                shutil.copyfile(c / rel, dst)


def compare_json(fleet: Path, capsys, name: str) -> dict:
    argv = ["compare", *FLEET, "--name", name, "--profiles-dir", str(fleet / "profiles"), "--results-dir",
            str(fleet / "results"), "--out-dir", str(fleet / "reports"), "--json"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_three_machines_merge_as_a_union_and_compare_reads_them_all(tmp_path, capsys):
    clones = [clone(tmp_path / f"clone-{i}", mid) for i, mid in enumerate(FLEET)]
    assert all(not (files(a) & files(b)) for i, a in enumerate(clones) for b in clones[i + 1:])  # no file shared
    fleet = tmp_path / "fleet"
    merge(clones, fleet)
    assert files(fleet) == set().union(*map(files, clones))
    r = compare_json(fleet, capsys, "fleet")
    assert r["reference"] == BIG and r["configurations"] >= 1
    for mid in FLEET:  # every machine has its own numbers in the table
        assert any(row.get(mid) is not None for row in r["table"]), mid
        assert any(row.get(f"{mid} / {BIG}") is not None for row in r["table"]) or mid == BIG
    page = (Path(r["report"]).parent / "report.md").read_text()
    assert all(f"| {mid} |" in page for mid in FLEET)  # the hardware table: one line per machine
    counted = {mid: len(m["trials"].trial_id.unique()) for mid, m in gather(list(FLEET), fleet / "profiles",
                                                                            fleet / "results").items()}
    assert counted == {mid: len(TrialStore(ROOT / "results" / mid / "trials.jsonl").rows()[0]) for mid in FLEET}


def test_one_machine_from_two_clones_merges_as_the_union_of_its_rows(tmp_path, capsys):
    """The realistic collision: two machines of one type (one id), or two checkouts on one machine. Clone A holds
    the first 150 rows; clone B was cloned when 100 were committed and appended the rest. Appended together they
    hold the 100 shared rows twice, which the store reads once: compare gives what the full store gives."""
    lines = (ROOT / "results" / BIG / "trials.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) > 150
    a = clone(tmp_path / "clone-a", BIG, lines[:150])
    b = clone(tmp_path / "clone-b", BIG, lines[:100] + lines[150:])
    others = [clone(tmp_path / f"clone-{i}", mid) for i, mid in enumerate(FLEET[1:])]
    fleet = tmp_path / "fleet"
    merge([a, b, *others], fleet)
    merged = fleet / "results" / BIG / "trials.jsonl"
    assert len(merged.read_text().splitlines()) == len(lines) + 100  # the shared rows twice on disk ...
    rows, problems = TrialStore(merged).rows()
    assert not problems and len(rows) == len(lines)                  # ... once when read
    assert len({r["trial_id"] for r in rows}) == len(lines)
    whole = tmp_path / "whole"
    for mid in FLEET:
        clone(whole, mid)
    assert compare_json(fleet, capsys, "x")["table"] == compare_json(whole, capsys, "x")["table"]
