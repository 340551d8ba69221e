import pytest
import torch

from cpugrpo.train import curriculum, data, models


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(3, 2)
        self.unused = torch.nn.Parameter(torch.ones(4))


def test_penalty_zero_at_anchor_positive_after_a_step_and_gradient_matches():
    m = Toy()
    params = dict(m.named_parameters())
    fisher = {n: torch.rand_like(p) + 0.1 for n, p in params.items()}
    anchor = {n: p.detach().clone() for n, p in params.items()}
    lam = 3.0
    assert float(curriculum.ewc_penalty(params, fisher, anchor, lam)) == 0.0
    with torch.no_grad():
        m.a.weight.add_(0.1)
    pen = curriculum.ewc_penalty(dict(m.named_parameters()), fisher, anchor, lam)
    assert float(pen) > 0
    pen.backward()
    for n, p in m.named_parameters():  # d/dθ λ Σ F (θ-θ*)^2 = 2 λ F (θ-θ*)
        expected = 2 * lam * fisher[n] * (p.detach() - anchor[n])
        assert torch.allclose(p.grad, expected, atol=1e-6), n


def test_fisher_non_negative_and_zero_without_gradient(tiny_dir):
    loaded = models.load(str(tiny_dir))
    frozen = "model.layers.1.mlp.down_proj.weight"
    dict(loaded.model.named_parameters())[frozen].requires_grad_(False)
    extra = torch.nn.Parameter(torch.zeros(3))  # a parameter the loss never touches
    loaded.model.register_parameter("never_used", extra)
    f = curriculum.fisher_diagonal(loaded.model, loaded.tokenizer, data.generate(4, "basic"), 4)
    assert all((v >= 0).all() for v in f.values())
    assert frozen not in f
    assert torch.count_nonzero(f["never_used"]) == 0
    assert torch.count_nonzero(f["model.embed_tokens.weight"]) > 0


def test_consolidate_sums_fisher_and_moves_anchor():
    m = Toy()
    f1 = {n: torch.ones_like(p) for n, p in m.named_parameters()}
    e1 = curriculum.consolidate(None, m, f1, 1.0)
    with torch.no_grad():
        m.a.bias.add_(1.0)
    e2 = curriculum.consolidate(e1, m, f1, 1.0, "bf16")
    assert torch.equal(e2.fisher["a.bias"].float(), torch.full((2,), 2.0))
    assert torch.allclose(e2.anchor["a.bias"].float(), m.a.bias.detach(), atol=1e-2)
    assert e2.nbytes == sum(2 * p.numel() * 2 for p in m.parameters())


@pytest.mark.parametrize("stages,lam,needle", [
    ({"basic": 0, "intermediate": 0, "advanced": 0}, 1.0, "zero steps"),
    ({"basic": 5}, -1.0, "lambda must be >= 0"),
    ({"expert": 5}, 1.0, "unknown stage 'expert'"),
])
def test_bad_curriculum(stages, lam, needle):
    with pytest.raises(curriculum.CurriculumError, match=needle):
        curriculum.check_stages(stages, lam)


def test_penalty_enters_the_training_loss(tiny_dir, tmp_path):
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.train import trainer

    from .test_trainer import length_reward

    loaded = models.load(str(tiny_dir))
    m = loaded.model
    fisher = {n: torch.ones_like(p) for n, p in m.named_parameters()}
    anchor = {n: p.detach().clone() + 0.5 for n, p in m.named_parameters()}  # far from θ: large penalty
    ewc = curriculum.EWC(1.0, fisher, anchor)
    cfg = TrainConfig(model=str(tiny_dir), steps=2, batch_size=8, num_generations=4, max_completion_length=8,
                      learning_rate=1e-2)
    before = float(ewc(m))
    steps = trainer.run_grpo(cfg, m, loaded.tokenizer, tmp_path, progress=False, extra_loss=ewc,
                             reward_funcs=[length_reward])
    assert steps[0].metrics["extra_loss"] == pytest.approx(before, rel=1e-4)
    assert float(ewc(m)) < before  # the optimizer pulled θ towards θ*: the penalty reached the gradient


def test_sample_fisher_is_seeded_non_negative_and_differs_from_gold(tiny_dir):
    loaded = models.load(str(tiny_dir))
    problems = data.generate(3, "basic")
    a = curriculum.fisher_diagonal(loaded.model, loaded.tokenizer, problems, 3, "sample", 6, seed=1)
    b = curriculum.fisher_diagonal(loaded.model, loaded.tokenizer, problems, 3, "sample", 6, seed=1)
    gold = curriculum.fisher_diagonal(loaded.model, loaded.tokenizer, problems, 3, "gold")
    name = "model.embed_tokens.weight"
    assert torch.equal(a[name], b[name]) and all((v >= 0).all() for v in a.values())
    assert not torch.equal(a[name], gold[name])
    with pytest.raises(curriculum.CurriculumError, match="unknown Fisher mode"):
        curriculum.fisher_diagonal(loaded.model, loaded.tokenizer, problems, 3, "empirical")


def _entry(stage, per_item, levels):
    return {"stage": stage, "splits": {"test": {"per_item": per_item, "levels": levels}}}


def test_study_summary_on_a_hand_worked_case():
    from cpugrpo.runs import study

    levels = "bbbbbbbbbbaa"  # ten basic items, two advanced (ignored: the first stage is basic)
    base = {"lambda": 0.0, "eval_splits": ["test"], "history": [
        _entry("start", "0" * 12, levels), _entry("basic", "1111111100" + "00", levels),
        _entry("advanced", "1111000000" + "11", levels)]}
    ewc = {"lambda": 50.0, "fisher": "gold", "eval_splits": ["test"], "history": [
        _entry("start", "0" * 12, levels), _entry("basic", "1111111100" + "00", levels),
        _entry("advanced", "1111110000" + "11", levels)]}
    s = study.summarize([base, ewc])
    assert s["first_stage"] == "basic"
    b, e = s["splits"]["test"]
    assert (b["after_first"], b["final"], b["n"]) == (0.8, 0.4, 10)
    assert b["forgetting"] == pytest.approx(0.4) and b["forgetting_ci95"][0] > 0  # 4 of 10 lost, none gained
    assert e["forgetting"] == pytest.approx(0.2) and e["vs_no_ewc"] == pytest.approx(0.2)
    assert e["recovered_fraction"] == pytest.approx(0.5)  # 0.2 of the 0.4 lost
    assert e["vs_no_ewc_ci95"][0] < 0.2 < e["vs_no_ewc_ci95"][1]
    from cpugrpo.report.quality import curriculum_lines  # the report quotes the same numbers, with the split

    row = {"study_id": "s1", "stage_steps": {"basic": 40, "advanced": 150}, "config": {"learning_rate": 3e-4},
           "summary": s}
    line = curriculum_lines([row])[0]
    assert line.startswith("Study s1 (basic 40, advanced 150 steps, lr 0.0003), split test, 10 basic problems")
    assert "no EWC: basic 80.0% after its stage -> 40.0% at the end, forgetting +40.0 [" in line
    assert "lambda 50 (gold Fisher): basic 80.0% after its stage -> 60.0% at the end, forgetting +20.0" in line
    assert "vs no EWC +20.0 [" in line


def test_sample_against_gold_fisher_at_their_dev_chosen_lambdas():
    """Two studies of one plan (a gold one, a sample one): each Fisher's lambda is picked on dev, the two are paired
    on test, and the report says so; a study of another plan is not paired with them."""
    from cpugrpo.report.quality import curriculum_lines

    levels = "bbbb"

    def arm(study, lam, fisher, dev_end, test_end, lr=1e-4):
        hist = [{"stage": s, "splits": {sp: {"per_item": items[i], "levels": levels} for sp, items in
                                        (("dev", ("0000", "1111", dev_end)), ("test", ("0000", "1111", test_end)))}}
                for i, s in enumerate(("start", "basic", "intermediate"))]
        return {"study_id": study, "lambda": lam, "fisher": fisher, "stage_steps": {"basic": 1}, "history": hist,
                "config": {"learning_rate": lr}, "eval_splits": ["dev", "test"], "summary": {}}

    rows = [arm("g", 0.0, "gold", "0000", "0000"), arm("g", 5.0, "gold", "1100", "1100"),
            arm("g", 50.0, "gold", "1000", "1111"),  # better on test, worse on dev: not picked
            arm("s", 0.0, "sample", "0000", "0001"), arm("s", 5.0, "sample", "1000", "0000"),
            arm("s", 50.0, "sample", "1110", "1110"), arm("other", 5.0, "sample", "1111", "1111", lr=3e-5)]
    for r in rows:  # the sample study ran later: its rows name their build and ran on another thread count
        if r["study_id"] == "s":
            r.update(model_cache_key="tiny-v1-seed0-abc")
            r["config"].update(threads=2, preset_seed=0, scale_rewards="group")
    line = [x for x in curriculum_lines(rows) if x.startswith("Sample-based")]
    assert len(line) == 1
    assert "(gold 5, sample 50), split test, 4 basic problems: 50.0% against 75.0% at the end, sample - gold " \
           "+25.0 points [" in line[0]
    assert "no-EWC arms agree on 75.0% of the final test items" in line[0]


@pytest.mark.slow
def test_curriculum_command_evaluates_two_splits_and_records_each_arm(tiny_dir, tmp_path):
    import json
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "cpugrpo.cli", "curriculum", "--model", str(tiny_dir), "--stage-steps",
                        "basic=1,advanced=1", "--compare-lambda", "0,10", "--fisher", "gold,sample", "--eval-splits",
                        "dev,test", "--eval-n", "6", "--batch-size", "4", "--num-generations", "2",
                        "--max-completion-length", "8", "--json", "--run-dir", str(tmp_path / "run"),
                        "--results-dir", str(tmp_path / "res")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [(st["lambda"], st["fisher"]) for st in out["studies"]] == [(0.0, "gold"), (10.0, "gold"),
                                                                       (10.0, "sample")]
    assert set(out["summary"]["splits"]) == {"dev", "test"}
    rows = [json.loads(line) for f in (tmp_path / "res").glob("*/curriculum.jsonl") for line in
            f.read_text().splitlines()]
    assert len(rows) == 3 and len({r["study_id"] for r in rows}) == 1
    assert all(set(h["splits"]) == {"dev", "test"} for r in rows for h in r["history"])
