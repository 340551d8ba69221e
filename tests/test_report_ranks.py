"""The report over processes x threads: the scaling figure places every trial by the CPUs its layout used (rows
from before the processes knob ran one process), and the memory section quotes each rank's and the summed peak RSS
of multi-process trials beside one process of the same configuration, or says that none was measured."""

from cpugrpo.report import plots
from cpugrpo.report.machine import write_report
from cpugrpo.report.ranks import memory_lines
from cpugrpo.report.results import load_trials

from .report_data import make_machine, trial_row


def _texts(fig) -> list[str]:
    ax = fig.axes[0]
    return ([t.get_text() for t in ax.texts] + [t.get_text() for t in ax.get_legend().get_texts()]
            + [ax.get_xlabel()] + [t.get_text() for t in ax.get_xticklabels()])


def _rows():
    return [trial_row(0, threads=1, sps=30.0, rss=1000),                       # before the knob: one process
            trial_row(1, threads=2, sps=50.0, rss=1000, processes=1),
            trial_row(2, threads=1, sps=60.0, rss=1900, processes=2, rank_rss=[960.0, 940.0])]


def test_scaling_figure_is_processes_by_threads(tmp_path):
    make_machine(tmp_path, "m", _rows())
    texts = _texts(plots.thread_scaling(load_trials(tmp_path / "results" / "m")))
    assert "CPUs used: processes x threads per process" in texts
    assert {"1 process (median)", "2 processes (median)"} <= set(texts)
    assert "1x1: 100% eff." in texts and "1x2: 83% eff." in texts and "2x1: 100% eff." in texts
    assert [t for t in texts if t in ("1", "2")] == ["1", "2"]  # ticks at the CPUs used


def test_scaling_figure_reads_rows_from_before_the_knob_as_one_process(tmp_path):
    make_machine(tmp_path, "m", _rows()[:1] + [trial_row(1, threads=2, sps=50.0)])
    texts = _texts(plots.thread_scaling(load_trials(tmp_path / "results" / "m")))
    assert "1x1: 100% eff." in texts and "1x2: 83% eff." in texts and "2 processes (median)" not in texts


def test_memory_section_quotes_rank_and_summed_rss(tmp_path):
    assert memory_lines(_rows()[:2]) == ["None measured here: every trial on this machine ran one process."]
    (line,) = memory_lines(_rows())
    assert line.startswith("tiny, 2 processes x 1 threads, batch 32 (trial t2): each rank 940-960 MiB, summed over "
                           "the 2 ranks 1900 MiB; one process, same configuration: 1000 MiB (trial t1)")
    assert line.endswith("so the ranks together hold +900 MiB.")
    (old,) = memory_lines([_rows()[0], trial_row(3, threads=1, sps=55.0, rss=1800, processes=2)])
    assert "per-rank peaks not recorded; the trial's peak RSS 1800 MiB" in old
    make_machine(tmp_path, "m", _rows())
    write_report("m", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (tmp_path / "reports" / "m" / "report.md").read_text()
    title = "Processes x threads: speed and memory of data-parallel ranks"
    assert f"## {title}" in md and "own copy of the weights, the optimizer state" in md
    assert "- tiny, 2 processes x 1 threads" in md
    assert f"<h2>{title}</h2>" in (tmp_path / "reports" / "m" / "index.html").read_text()
