"""The star's processes axis: data-parallel GRPO (torch.distributed ranks over gloo) on the tiny preset, the usable
CPUs split among P ranks (threads per rank = usable // P; P = 1 is the star's centre).

A class of its own rather than a parameter of bench_grpo's: asv keys a benchmark's history by its parameters, so a
new parameter there would start every GRPO benchmark's history afresh. Only isolated trials (cpugrpo.runs.trial,
which starts the ranks) measure it; asv's own process cannot time a step that spans several processes. Other models
raise NotImplementedError (skipped) unless CPUGRPO_BENCH_FULL=1.

- ``GRPOProcesses.track_samples_per_s`` / ``track_tokens_per_s``: the step's whole batch over its wall time, from one
  trial per point (1 warm-up + 3 measured steps, medians), run once in ``setup_cache``.
"""

import itertools

from . import common

_PARAMS = (common.models(), common.thread_params())


class GRPOProcesses:
    params = _PARAMS
    param_names = ["model", "processes"]
    timeout = 3600

    def setup_cache(self):
        """One isolated trial per point the default suite runs; {(model, processes): trial row}."""
        rows = {}
        for model, processes in itertools.product(*_PARAMS):
            try:
                common.check_processes(processes, model)
            except NotImplementedError:
                continue
            rows[(model, processes)] = common.trial(model, common.processes_point(processes))
        return rows

    def setup(self, rows, model, processes):
        common.check_processes(processes, model)
        row = rows[(model, processes)]
        if row["status"] != "ok":
            raise RuntimeError(f"trial failed: {row['reason']}")
        self.summary = row["summary"]

    def track_samples_per_s(self, rows, model, processes):
        return self.summary["samples_per_s"]["median"]

    track_samples_per_s.unit = "samples/s"

    def track_tokens_per_s(self, rows, model, processes):
        return self.summary["tokens_per_s"]["median"]

    track_tokens_per_s.unit = "tokens/s"
