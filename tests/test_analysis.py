"""Pure analysis functions over trial rows, from tables of inputs and expected outputs."""

from cpugrpo.runs import analysis


def test_pareto_front_table():
    cases = [([(1, 1)], [0]), ([(1, 2), (2, 1)], [1]), ([(3, 3), (2, 2), (1, 1)], [0, 1, 2]),
             ([(2, 2), (2, 2)], [0, 1])]
    for points, expected in cases:
        assert analysis.pareto_front(points) == expected


def test_quality_gate_margin_and_paired_interval():
    base = {"overall": {"accuracy": 0.50}, "per_item": "1" * 50 + "0" * 50}
    worse = {"overall": {"accuracy": 0.47}, "per_item": "1" * 47 + "0" * 53}
    close = {"overall": {"accuracy": 0.49}, "per_item": "1" * 49 + "0" * 51}
    g = analysis.quality_gate(worse, base)
    assert not g["passed"] and round(g["difference"], 2) == -0.03 and g["ci95"][0] < -0.03 < g["ci95"][1]
    assert analysis.quality_gate(close, base)["passed"]


def test_scaling_efficiency_hand_computed():
    rows = analysis.scaling([(2, 30.0), (1, 20.0)])
    assert [(r["threads"], r["speedup"], r["efficiency"]) for r in rows] == [(1, 1.0, 1.0), (2, 1.5, 0.75)]
