"""GRPO training-step benchmarks on the real trainer (trl.GRPOTrainer underneath), over the CPU knobs.

Parameters: model x the knobs marked ``bench`` in the registry (core/config.py): threads x prompts per step x update
precision x rollout precision x gradient checkpointing (8 completions per prompt, 48 new tokens). The default suite
runs the star around the default configuration (see common.py); other points raise NotImplementedError unless
CPUGRPO_BENCH_FULL=1.

- ``GRPOStep.time_step``: one training step, timed by asv; the warm-up step runs in ``setup``.
- ``GRPOStep.peakmem_step``: the process's peak RSS over setup (model, warm-up step) and one more step.
- ``GRPOTrack.track_*``: samples/s, completion tokens/s and each phase's share of step time, from one isolated
  trial per configuration (its own process, 1 warm-up + 3 measured steps, medians), run once in ``setup_cache``.
"""

from . import common

_PARAMS = tuple(common.param_values())  # model x the registry's benchmark knobs (core/config.py)
_NAMES = common.param_names()


class GRPOStep:
    params = _PARAMS
    param_names = _NAMES
    number = 1
    repeat = (1, 3, 120.0)
    warmup_time = 0
    timeout = 900

    def setup(self, model, *p):
        common.check_star(common.point(*p), model)
        self.driver = common.StepDriver(model, common.point(*p))
        self.driver.start()

    def teardown(self, *params):
        driver = getattr(self, "driver", None)
        if driver is not None:
            driver.close()

    def time_step(self, *params):
        self.driver.step()

    def peakmem_step(self, *params):
        self.driver.step()


def _all_points():
    import itertools

    for model, *p in itertools.product(*_PARAMS):
        try:
            common.check_star(common.point(*p), model)
        except NotImplementedError:
            continue
        yield (model, *p)


class GRPOTrack:
    params = _PARAMS
    param_names = _NAMES
    timeout = 3600

    def setup_cache(self):
        """One isolated trial per configuration on the star; {params: trial row}."""
        return {pt: common.trial(pt[0], common.point(*pt[1:])) for pt in _all_points()}

    def setup(self, rows, model, *p):
        common.check_star(common.point(*p), model)
        row = rows[(model, *p)]
        if row["status"] != "ok":
            raise RuntimeError(f"trial failed: {row['reason']}")
        self.summary = row["summary"]

    def track_samples_per_s(self, rows, *params):
        return self.summary["samples_per_s"]["median"]

    track_samples_per_s.unit = "samples/s"

    def track_tokens_per_s(self, rows, *params):
        return self.summary["tokens_per_s"]["median"]

    track_tokens_per_s.unit = "tokens/s"

    def track_share_rollout(self, rows, *params):
        return self.summary["phase_share"]["rollout"]

    track_share_rollout.unit = "fraction of step"

    def track_share_scoring(self, rows, *params):
        return self.summary["phase_share"]["scoring"]

    track_share_scoring.unit = "fraction of step"

    def track_share_update(self, rows, *params):
        return self.summary["phase_share"]["update"]

    track_share_update.unit = "fraction of step"
