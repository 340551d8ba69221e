"""One GRPO step on fixed completions and rewards, its gradients saved: run alone (one process) or under torch's
launcher (``python -m cpugrpo.runs.launch --standalone --nproc-per-node 2 tests/dist_case.py ...``) by
tests/test_dist.py, which compares the two.

    python tests/dist_case.py MODEL_DIR OUT.pt

Generation is replaced: the completion of global row j is a fixed function of j (TRL hands rank r rows
[r * n, (r + 1) * n) of the generation batch), and the reward is a fixed function of the completion, so one process
and two ranks see the same batch, the same rewards and the same advantages. Everything else is the real trainer:
``run_grpo``, its per-rank batch, the shared-prefix update through DDP, the timed all-reduce. The gradients are
taken as the optimizer sees them (after the all-reduce; clipping off), with the shared prefix and without, in
micro-batches, and for LoRA adapters.
"""

from __future__ import annotations

import os
import sys

BATCH, GROUP = 12, 4  # 3 prompts x 4: over 2 ranks the middle group is split between them
MODES = {"prefix": {"shared_prefix": True}, "plain": {"shared_prefix": False},
         "micro": {"micro_batch": 3},  # gradient accumulation: 2 micro-batches per rank, 4 in one process
         "lora": {"adapter": "lora", "base_precision": "fp32"}}  # peft adapters, shared prefix through the base


def completion(j: int, vocab: int) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(1000 + j)
    return torch.randint(5, vocab - 5, (3 + j % 5,), generator=g).tolist()  # lengths vary: padding differs by rank


def fixed_reward(completions, completion_ids, **kwargs):
    return [float((sum(c) * 7 + len(c)) % 5) for c in completion_ids]


def main(model_dir: str, out: str) -> None:
    from cpugrpo.hw.runtime import die_with_parent

    if os.environ.get("CPUGRPO_AGENT_PID"):
        die_with_parent(int(os.environ["CPUGRPO_AGENT_PID"]))
    import torch

    torch.set_num_threads(1)
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.train import dist, models
    from cpugrpo.train import trainer as tr

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init(120)
    real = tr.make_trainer_class
    grads, ran = {}, {}

    def fixed_class():
        base = real()

        class Fixed(base):
            def _snapshot_generate(self, prompt_ids):
                start = self.accelerator.process_index * len(prompt_ids)
                return [completion(start + i, len(self._tokenizer)) for i in range(len(prompt_ids))]

            def create_optimizer(self, *args, **kwargs):
                opt = super().create_optimizer(*args, **kwargs)
                plain = opt.step

                def step(*a, **k):
                    grads[mode] = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()
                                   if p.grad is not None}
                    return plain(*a, **k)

                opt.step = step
                return opt

        return Fixed

    real_args = tr.grpo_args

    def unclipped_args(cfg, output_dir):  # the raw gradients: clipping would scale both sides to norm 1
        args = real_args(cfg, output_dir)
        args.max_grad_norm = 0.0
        return args

    tr.make_trainer_class, tr.grpo_args = fixed_class, unclipped_args
    for mode, knobs in MODES.items():
        cfg = TrainConfig(model=model_dir, steps=1, batch_size=BATCH, num_generations=GROUP, threads=1,
                          max_completion_length=8, processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), **knobs)
        loaded = models.load(model_dir, progress=False)
        steps = tr.run_grpo(cfg, loaded.model, loaded.tokenizer, os.path.join(os.path.dirname(out), f"trl-{mode}"),
                            progress=False, reward_funcs=[fixed_reward])
        ran[mode] = {"shared_prefix_ran": bool(steps[0].metrics.get("shared_prefix_ran")),
                     "communication_s": steps[0].communication_s, "completions": steps[0].completions}
    if dist.rank() == 0:
        torch.save({"grads": grads, "ran": ran, "world": dist.world_size()}, out)
    dist.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
