"""core/store.py: the append-only trial store."""

from cpugrpo.core.store import TrialStore


def test_store_appends_whole_rows_and_survives_a_torn_line(tmp_path):
    store = TrialStore(tmp_path / "m" / "trials.jsonl")
    store.append({"key": "a", "trial_id": "a-1", "status": "ok"})
    with open(store.path, "a") as fh:  # a crash mid-write leaves a torn line
        fh.write('{"key": "b", "trial_')
    store.append({"key": "c", "trial_id": "c-1", "status": "failed", "reason": "timeout"})
    rows, problems = store.rows()
    assert [r["key"] for r in rows] == ["a", "c"]
    assert len(problems) == 1 and "trials.jsonl:2" in problems[0]
    assert store.done_keys() == {"a", "c"}
