"""train/lowbit.py: bf16 weights stepped in fp32 and stochastically rounded back, one row block at a time."""

import pytest
import torch

from cpugrpo.train import lowbit

ULP_BELOW_ONE = 2.0 ** -8  # bf16 spacing just below 1.0 (8 bits of mantissa: 2**-7 above 1.0, 2**-8 below)


def _adamw(params, lr):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def test_small_updates_round_away_in_plain_bf16_but_survive_stochastic_rounding():
    n, lr = 1 << 18, 1e-4
    # AdamW's first step moves every weight by lr * g / (|g| + eps) ~= lr: 1e-4, 1/39 of the bf16 step below 1.0
    plain = torch.nn.Parameter(torch.ones(n, dtype=torch.bfloat16))
    plain.grad = torch.ones_like(plain)
    _adamw([plain], lr).step()
    assert torch.all(plain.detach() == 1.0)  # round to nearest: 1 - 1e-4 is stored as 1.0, the update is lost

    torch.manual_seed(0)
    sr = torch.nn.Parameter(torch.ones(n, dtype=torch.bfloat16))
    sr.grad = torch.ones_like(sr)
    opt = lowbit.with_stochastic_rounding(_adamw([sr], lr))
    assert opt.stochastic_rounding is True
    opt.step()
    w = sr.detach().float()
    assert sr.dtype == torch.bfloat16
    # every weight is one of the two bf16 neighbours of 1 - 1e-4 ...
    assert set(torch.unique(w).tolist()) == {1.0 - ULP_BELOW_ONE, 1.0}
    # ... taken with probability p = 1e-4 / 2**-8 = 0.0256 for the lower one, so the mean moves by the fp32 update.
    # The count of rounded-down weights is binomial(n, p): its standard deviation sqrt(n p (1 - p)) = 80.8 of
    # n p = 6711 expected, 1.2% of it; 5% is four standard deviations (the seed makes the draw fixed anyway).
    moved = 1.0 - w.double().mean().item()
    assert moved == pytest.approx(lr, rel=0.05)
    down = int((w < 1.0).sum())
    assert abs(down - n * lr / ULP_BELOW_ONE) < 5 * (n * 0.0256 * 0.9744) ** 0.5


def _nearest(x, generator=None, inplace=False, out=None, noise=None):
    """Round-to-nearest stand-in for stochastic_round_to_bf16: makes the blocked and one-block paths comparable."""
    return x.to(torch.bfloat16) if out is None else out.copy_(x)


def _two_steps(chunk, monkeypatch, grads, start):
    """Two AdamW steps of a bf16 [32, 16] weight through with_stochastic_rounding with ``CHUNK = chunk`` and
    round-to-nearest. Returns the weight, the optimizer and the fp32 proxies handed to the rounding."""
    monkeypatch.setattr(lowbit, "CHUNK", chunk)
    seen = []

    def record(x, generator=None, inplace=False, out=None, noise=None):
        seen.append(x.clone())
        return _nearest(x, out=out)

    monkeypatch.setattr(lowbit, "stochastic_round_to_bf16", record)
    p = torch.nn.Parameter(start.clone())
    opt = lowbit.with_stochastic_rounding(_adamw([p], 1e-2))
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p, opt, seen


def test_row_blocks_step_like_one_block_and_keep_their_state(monkeypatch):
    torch.manual_seed(1)
    start = torch.randn(32, 16).to(torch.bfloat16)
    grads = [torch.randn(32, 16).to(torch.bfloat16) for _ in range(2)]

    whole, whole_opt, whole_seen = _two_steps(1 << 22, monkeypatch, grads, start)
    blocked, blocked_opt, blocked_seen = _two_steps(64, monkeypatch, grads, start)  # 64 // 16 = 4 rows a block

    assert [tuple(x.shape) for x in whole_seen] == [(32, 16)] * 2
    assert [tuple(x.shape) for x in blocked_seen] == [(4, 16)] * 16  # 8 blocks, two steps
    # the fp32 results (before rounding) and the stored weights are the same, bit for bit
    assert torch.equal(torch.cat(blocked_seen[8:]), whole_seen[1])
    assert torch.equal(blocked.detach(), whole.detach())
    assert not torch.equal(blocked.detach(), start)  # and the steps did move the weights

    # one state per block, created at the first step and reused at the second (step count 2, not two states of 1)
    states = list(blocked_opt.state.values())
    assert len(states) == 8 and all(float(s["step"]) == 2 for s in states)
    assert all(s["exp_avg"].dtype == torch.float32 and s["exp_avg"].shape == (4, 16) for s in states)
    (whole_state,) = whole_opt.state.values()
    assert torch.equal(torch.cat([s["exp_avg"] for s in states]), whole_state["exp_avg"])
    assert torch.equal(torch.cat([s["exp_avg_sq"] for s in states]), whole_state["exp_avg_sq"])

    # the one-block path itself: an fp32 AdamW whose weight is rounded to bf16 after each step
    ref = torch.nn.Parameter(start.float())
    ref_opt = _adamw([ref], 1e-2)
    for g in grads:
        ref.grad = g.float()
        ref_opt.step()
        with torch.no_grad():
            ref.copy_(ref.to(torch.bfloat16).float())
    assert torch.equal(whole.detach().float(), ref.detach())
    # the optimizer sees its own parameter list again after each step
    assert blocked_opt.param_groups[0]["params"] == [blocked]


def test_row_blocks_cover_every_row_once(monkeypatch):
    monkeypatch.setattr(lowbit, "CHUNK", 100)
    p = torch.empty(23, 16)
    blocks = lowbit._row_blocks(p)  # 100 // 16 = 6 rows a block: 6 + 6 + 6 + 5
    assert [(b.start, b.stop) for b in blocks] == [(0, 6), (6, 12), (12, 18), (18, 23)]
    assert lowbit._row_blocks(torch.empty(1000)) == [slice(None)]  # 1-d: one block, however large
    assert lowbit._row_blocks(torch.empty(10, 10)) == [slice(None)]  # within CHUNK: one block
    assert [(b.start, b.stop) for b in lowbit._row_blocks(torch.empty(3, 500))] == [(0, 1), (1, 2), (2, 3)]


def test_a_closure_is_refused():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    p.grad = torch.ones_like(p)
    opt = lowbit.with_stochastic_rounding(_adamw([p], 1e-3))
    with pytest.raises(ValueError, match="closure"):
        opt.step(lambda: 0.0)
    assert torch.all(p.detach() == 1.0)


def test_fp32_parameters_in_the_same_optimizer_are_stepped_normally():
    torch.manual_seed(2)
    w32 = torch.nn.Parameter(torch.randn(8, 8))
    w16 = torch.nn.Parameter(torch.ones(1 << 16, dtype=torch.bfloat16))
    frozen = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))  # no gradient: skipped
    g32 = torch.randn(8, 8)
    ref = torch.nn.Parameter(w32.detach().clone())
    ref_opt = _adamw([ref], 1e-3)
    opt = lowbit.with_stochastic_rounding(torch.optim.AdamW([{"params": [w32, frozen]}, {"params": [w16]}],
                                                            lr=1e-3, weight_decay=0.0))
    for _ in range(2):
        w32.grad, ref.grad, w16.grad = g32.clone(), g32.clone(), torch.ones_like(w16)
        opt.step()
        ref_opt.step()
    assert w32.dtype == torch.float32 and torch.equal(w32.detach(), ref.detach())
    assert float(opt.state[w32]["step"]) == 2  # an fp32 parameter keeps its state under its own key
    assert torch.all(frozen.detach() == 1.0) and frozen not in opt.state
    # the bf16 weight moved by about 2 x lr on average (1e-3 is a quarter of the bf16 step below 1.0)
    assert 1.0 - w16.detach().double().mean().item() == pytest.approx(2e-3, rel=0.05)
    assert [g["params"] for g in opt.param_groups] == [[w32, frozen], [w16]]
