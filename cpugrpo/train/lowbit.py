"""bf16 weights with an update that does not round away: stochastic rounding of each parameter's fp32 update.

With weights stored in bf16 (8 bits of mantissa), an update smaller than half a unit in the last place of the weight
rounds back to the same weight under round-to-nearest: with learning rates around 1e-5 most of AdamW's updates vanish.
Stochastic rounding rounds up or down with probabilities proportional to the distance, so the expected stored weight
equals the fp32 result and small updates accumulate over steps (as in torchao's ``bf16_stochastic_round`` option).

``with_stochastic_rounding(optimizer)`` changes one thing about any torch optimizer: its ``step()`` runs one
parameter at a time, on an fp32 view of that parameter and its gradient, and writes the result back into the bf16
weight stochastically rounded. The fp32 copies exist for one tensor at a time (the largest, a 151,936 x 896 embedding,
is 1.1 GB of transient fp32 for weight and gradient); optimizer state is created at fp32 (Adafactor keeps only
factored row and column statistics, so that is small; AdamW's two moments would be 8 bytes per parameter).
"""

from __future__ import annotations


def stochastic_round_to_bf16(x, generator=None, inplace: bool = False, out=None, noise=None):
    """``x`` (fp32) rounded to bf16 at random: up with probability equal to the fraction of the bf16 step it lies
    above the lower neighbour. bf16 is fp32's top 16 bits, so adding uniform 16-bit noise to the bit pattern and
    truncating the low 16 bits does exactly that; the cast of the truncated value is then exact. (inf stays inf, NaN
    stays NaN; a value within a step of the largest bf16 may round up to inf, as rounding up should.)
    ``inplace``: overwrite ``x`` (a temporary) instead of allocating another fp32 tensor; ``out``: a bf16 tensor of
    ``x``'s shape to write into; ``noise``: an int64 scratch tensor of at least (numel + 1) // 2 elements.

    >>> import torch
    >>> x = torch.full((200_000,), 1.0 + 2 ** -10)  # 1/8 of the way from 1.0 to the next bf16 value (1 + 2**-7)
    >>> y = stochastic_round_to_bf16(x, torch.Generator().manual_seed(0)).float()
    >>> sorted(set(y.tolist())) == [1.0, 1.0 + 2 ** -7], abs(y.mean().item() - (1.0 + 2 ** -10)) < 2e-5
    (True, True)
    """
    import torch

    bits = (x if inplace else x.clone()).contiguous().view(torch.int32)
    n = bits.numel()
    # random_ fills an int64 with [0, 2**63): both 32-bit halves have uniform low 16 bits, so one draw serves two
    # elements
    words = noise[:(n + 1) // 2] if noise is not None else torch.empty((n + 1) // 2, dtype=torch.int64)
    r = words.random_(generator=generator).view(torch.int32)[:n].bitwise_and_(0xFFFF)
    bits.add_(r.view(bits.shape)).bitwise_and_(-65536)  # -65536 == 0xFFFF0000 as int32
    if out is not None:
        return out.copy_(bits.view(torch.float32))
    return bits.view(torch.float32).to(torch.bfloat16)


CHUNK = 1 << 22  # elements stepped at a time (16 MiB of fp32)


def _row_blocks(p) -> list:
    """Row slices of ``p`` of at most ~CHUNK elements (one slice for a small or 1-d tensor)."""
    if p.dim() < 2 or p.numel() <= CHUNK:
        return [slice(None)]
    rows = max(1, CHUNK // (p.numel() // p.shape[0]))
    return [slice(i, min(i + rows, p.shape[0])) for i in range(0, p.shape[0], rows)]


def with_stochastic_rounding(optimizer, generator=None):
    """Patch ``optimizer`` (in place; returned) so bf16 parameters are stepped in fp32 and stochastically rounded.

    A large weight is stepped as row blocks of at most CHUNK elements, each seen by the optimizer as a parameter of
    its own (a persistent proxy that owns its state): fp32 temporaries stay at two blocks (128 MiB), not the
    weight's size (1.1 GB for a 151,936 x 896 embedding and its gradient). For element-wise optimizers (AdamW) this
    is the same arithmetic; for Adafactor a block's column statistics are its own (a finer factorisation).
    ``generator``: where the rounding noise comes from (default torch's global one); data-parallel ranks pass one
    seeded alike, so they round alike."""
    import torch

    plain_step = optimizer.step
    proxies: dict = {}
    scratch: dict = {}  # fp32 weight and gradient blocks and the noise words, allocated once and reused

    def buffers(n):
        if scratch.get("n", 0) < n:
            scratch.update(n=n, p=torch.empty(n), g=torch.empty(n), noise=torch.empty((n + 1) // 2, dtype=torch.int64))
        return scratch["p"][:n], scratch["g"][:n], scratch["noise"]

    def step(closure=None):
        if closure is not None:
            raise ValueError("stochastic rounding steps one parameter at a time: a closure is not supported")
        groups = [g["params"] for g in optimizer.param_groups]
        try:
            for g in optimizer.param_groups:
                g["params"] = []
            for g, params in zip(optimizer.param_groups, groups, strict=True):
                for p in params:
                    if p.grad is None:
                        continue
                    if p.dtype != torch.bfloat16:
                        g["params"] = [p]
                        plain_step()
                        g["params"] = []  # else every later proxy step would step this parameter again
                        continue
                    for i, rows in enumerate(_row_blocks(p)):
                        proxy = proxies.get((id(p), i))
                        if proxy is None:
                            proxy = proxies[(id(p), i)] = torch.nn.Parameter(torch.empty(0), requires_grad=True)
                        low, low_grad = p.data[rows], p.grad[rows]
                        buf_p, buf_g, noise = buffers(low.numel())
                        proxy.data = buf_p.view(low.shape).copy_(low)
                        proxy.grad = buf_g.view(low.shape).copy_(low_grad)
                        g["params"] = [proxy]
                        try:
                            plain_step()
                            stochastic_round_to_bf16(proxy.data, generator, inplace=True, out=low, noise=noise)
                        finally:
                            proxy.data, proxy.grad = torch.empty(0), None
                    g["params"] = []
        finally:
            for g, params in zip(optimizer.param_groups, groups, strict=True):
                g["params"] = params
        return None

    optimizer.step = step
    optimizer.stochastic_rounding = True
    return optimizer
