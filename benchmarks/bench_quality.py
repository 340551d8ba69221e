"""Learning health: held-out accuracy of the tiny preset after a fixed short GRPO budget, per rollout precision and
evaluation precision. A commit that breaks learning (or a precision path) shows as a drop here.

Budget: 12 GRPO steps (the first is the warm-up), 4 prompts x 8 completions per step, then greedy exact match on
300 fixed held-out problems (100 per level). The budget is too short to raise accuracy by much; the benchmark guards
against losing it. One isolated trial per rollout precision (evaluated at every evaluation precision), run in
setup_cache.
"""

from . import common

STEPS = 12
PRECISIONS = ["fp32", "bf16", "int8"]


class Quality:
    params = (PRECISIONS, PRECISIONS)
    param_names = ["rollout_precision", "eval_precision"]
    timeout = 1800

    def setup_cache(self):
        out = {}
        for rollout in PRECISIONS:
            p = {**common.default_point(), "rollout_precision": rollout}
            out[rollout] = common.trial("tiny", p, measured_steps=STEPS - 1, evaluate=True,
                                        eval_precisions=PRECISIONS, eval_n=300)
        return out

    def setup(self, rows, rollout, eval_precision):
        row = rows[rollout]
        if row["status"] != "ok":
            raise RuntimeError(f"trial failed: {row['reason']}")
        self.acc = row["accuracy_by_precision"][eval_precision]

    def track_accuracy(self, rows, rollout, eval_precision):
        return 100.0 * self.acc["overall"]["accuracy"]

    track_accuracy.unit = "% held-out exact match"
