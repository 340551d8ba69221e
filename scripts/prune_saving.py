"""The saving of a prediction-pruned tune against an unpruned one, from committed files only (runs/prune.py):
each tune's speed-trial seconds (search, re-measures, finalists; not the gate), summed from its tune.json's window
in trials.jsonl, and the two picks. A tune.json may be read from git (``REV:path``), since a new tune of the same
model rewrites the file. Usage:

    python scripts/prune_saving.py HEAD~1:profiles/<id>/tune-qwen2-0.5b.json profiles/<id>/tune-qwen2-0.5b.json
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cpugrpo.runs.prune import saving, tune_trial_seconds


def local(spec: str) -> str:
    """A path, or ``REV:path`` written out of git to a temporary file."""
    if Path(spec).exists() or ":" not in spec:
        return spec
    text = subprocess.run(["git", "show", spec], capture_output=True, text=True, check=True).stdout
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    f.write(text)
    f.close()
    return f.name


def main(unpruned: str, pruned: str) -> dict:
    a, b = tune_trial_seconds(local(unpruned)), tune_trial_seconds(local(pruned))
    ta, tb = (json.loads(Path(local(s)).read_text())["train"] for s in (unpruned, pruned))
    return {"unpruned": {**a, "tune": unpruned}, "pruned": {**b, "tune": pruned}, **saving(a, b),
            "same_pick": ta == tb, "pick_differs_in": sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(main(*sys.argv[1:]), indent=1))
