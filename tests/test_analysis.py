"""Pure analysis functions over trial rows, from tables of inputs and expected outputs."""

from cpugrpo.runs import analysis


def test_pareto_front_table():
    cases = [([(1, 1)], [0]), ([(1, 2), (2, 1)], [1]), ([(3, 3), (2, 2), (1, 1)], [0, 1, 2]),
             ([(2, 2), (2, 2)], [0, 1])]
    for points, expected in cases:
        assert analysis.pareto_front(points) == expected


def test_gain_table():
    """(before, after) -> learned? The paired interval on the same items decides, not the point estimate."""
    cases = [("0" * 80 + "1" * 20, "0" * 60 + "1" * 40, True),     # +20 points on 100 items
             ("01" * 50, "10" * 50, False),                       # every item changed, accuracy the same
             ("0" * 95 + "1" * 5, "0" * 93 + "1" * 7, False),     # +2 points on 100 items: not measurable
             ("0" * 950 + "1" * 50, "0" * 920 + "1" * 80, True)]  # +3 points on 1000 items, no item lost
    for before, after, learned in cases:
        assert analysis.gain(before, after)["learned"] is learned, (before.count("1"), after.count("1"))


def _row(rates, rss, warmup=1):
    steps = [{"completions": 64, "wall_s": 64 / 10.0}] * warmup + [{"completions": 64, "wall_s": 64 / r}
                                                                  for r in rates]
    med = sorted(rates)[len(rates) // 2]
    return {"status": "ok", "spec": {"warmup_steps": warmup}, "steps": steps, "outside": {"os_peak_rss_mb": rss},
            "summary": {"samples_per_s": {"median": med, "min": min(rates), "max": max(rates)}}}


def test_rank_test_needs_enough_steps_to_separate():
    fast, slow = [60.0, 61, 62, 63, 64], [50.0, 51, 52, 53, 54]
    assert analysis.rank_test(fast, slow)["separated"]
    assert not analysis.rank_test(fast[:3], slow[:3])["separated"]  # complete separation, but p = 0.1 at 3 v 3
    assert analysis.min_attainable_p(3, 3) >= analysis.ALPHA > analysis.min_attainable_p(4, 4)
    assert analysis.step_rates(_row([60.0, 61.0], 1))[0] == 60.0  # the warm-up step is left out


def test_decide_clear_winner_keeps_the_faster_despite_more_memory():
    rows = [_row([50.0, 51, 52, 53, 54], 800), _row([60.0, 61, 62, 63, 64], 900)]
    d = analysis.decide(rows, ["fp32", "int8"])
    assert d["chosen"] == 1 and not d["tie"] and d["p"]["fp32"] < 0.05
    assert "int8 faster than fp32" in d["text"] and "tie" not in d["text"]


def test_decide_tie_goes_to_lower_peak_memory():
    rows = [_row([60.0, 62, 64, 66, 68], 900), _row([59.0, 61, 63, 65, 67], 850), _row([40.0, 41, 42, 43, 44], 700)]
    d = analysis.decide(rows, ["a", "b", "c"])
    assert d["leader"] == 0 and d["tied"] == [1] and d["chosen"] == 1  # c is separated (slower): not in the tie
    assert "tie: a and b not separated" in d["text"] and "b 850 MiB" in d["text"] and d["text"].endswith("-> b")
    # a tie in which the leader also has the least memory keeps the leader, and still says it was a tie
    d = analysis.decide([_row([60.0, 62, 64, 66, 68], 800), _row([59.0, 61, 63, 65, 67], 850)], ["a", "b"])
    assert d["chosen"] == 0 and d["tie"]
    # 3 steps against 3 can never be separated: the text says why
    d = analysis.decide([_row([60.0, 61, 62], 900), _row([50.0, 51, 52], 850)], ["a", "b"])
    assert d["chosen"] == 1 and "too few steps for the test to separate b" in d["text"]


def test_scaling_efficiency_hand_computed():
    rows = analysis.scaling([(2, 30.0), (1, 20.0)])
    assert [(r["threads"], r["speedup"], r["efficiency"]) for r in rows] == [(1, 1.0, 1.0), (2, 1.5, 0.75)]
