"""The ``cpugrpo`` command: parse, build a config, call one library function, print a table or ``--json``.

Each command builds its options dataclass (validated on construction), puts thread settings into the environment
(hw/runtime.py) before torch is imported, and calls one library function. Errors the user can fix are
``CpugrpoError``s: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import tables
from .commands import (
    _quiet_libraries,
    cmd_baseline,
    cmd_compare,
    cmd_curriculum,
    cmd_detect,
    cmd_eval,
    cmd_gate,
    cmd_probe,
    cmd_report,
    cmd_rollout_bench,
    cmd_sweep,
    cmd_train,
    cmd_tune,
)
from .predict_cmd import add_parser as add_predict_parser

EXIT_BAD_INPUT = 2


# -------------------------------------------------------------------------------------------------------- main
def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """``--config`` and one flag per knob that has one (core/config.py declares them; nothing is listed here)."""
    from ..core.config import KNOBS, TrainConfig
    from ..core.knobs import field_type

    p.add_argument("--config", help="TOML file with a [train] table (e.g. profiles/<id>/recommended.toml)")
    types = {"int": int, "float": float, "str": str}
    for name, k in KNOBS.items():
        flag = k.flag_name(name)
        if flag is None:
            continue
        kind = field_type(TrainConfig, name).split(" |")[0]
        text = k.help.replace("%", "%%") + (f" ({', '.join(map(str, k.choices))})" if k.choices else "")
        if kind == "bool":
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:  # choices are checked by TrainConfig, so a bad value is the usual one-line error, not argparse's usage
            p.add_argument(flag, dest=name, type=types[kind], help=text)


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
    """Where the ranks of a data-parallel run (``--processes``, runs/launch.py) meet: torch's launcher's settings."""
    p.add_argument("--nnodes", type=int, default=1, help="machines in a data-parallel run; each runs the same command "
                   "with its own --node-rank")
    p.add_argument("--node-rank", type=int, default=0, help="this machine's index, 0..nnodes-1 (node 0 hosts the "
                   "rendezvous)")
    p.add_argument("--master-addr", help="node 0's address (default 127.0.0.1)")
    p.add_argument("--master-port", type=int, help="node 0's rendezvous port, the same on every node (default: a free "
                   "port on one machine, 29500 across machines)")
    p.add_argument("--rdzv-timeout", type=float, default=60.0, dest="rdzv_timeout_s",
                   help="seconds a node waits for the master and for the other nodes (default 60)")


def build_parser() -> argparse.ArgumentParser:
    from ..core.config import KNOBS

    parser = argparse.ArgumentParser(prog="cpugrpo", description="GRPO on CPU: train, measure, tune, report")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train with GRPO and evaluate before/after")
    _add_train_flags(p)
    _add_launch_flags(p)
    p.add_argument("--run-dir", help="where to write the run (default runs/<time>-<model>)")
    p.add_argument("--seeds", help="train once per seed, e.g. 0,1,2 (each in its own process), and summarise the gain "
                   "over seeds")
    p.add_argument("--results-dir", help="where the run's row goes: <dir>/<machine-id>/training.jsonl (default "
                   "results, or $CPUGRPO_RESULTS_DIR)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_train, show=tables.show_train)

    p = sub.add_parser("eval", help="held-out accuracy per difficulty with 95%% intervals")
    p.add_argument("--model", default="tiny", help="preset or a model/run directory")
    p.add_argument("--n", type=int, default=600, help="number of held-out problems (balanced over difficulties)")
    p.add_argument("--precision", default="fp32", help="fp32, bf16 or int8")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out problem set")
    p.add_argument("--preset-seed", type=int, default=0, help="seed of the tiny preset's build (as train's)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: every usable CPU)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="generation limit per answer")
    p.add_argument("--split", help="held-out half: test (default; reported numbers), dev (where choices are made) "
                   "or heldout (both); with --data, the part of the file the same hash rule puts there")
    p.add_argument("--data", help="a GSM8K-format jsonl file to evaluate on (default: the whole file)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_eval, show=tables.show_eval)

    p = sub.add_parser("curriculum", help="3-stage curriculum with EWC; compare lambdas from the same start")
    _add_train_flags(p)
    p.add_argument("--stage-steps", default="basic=30,intermediate=30,advanced=30",
                   help="GRPO steps per stage, e.g. basic=20,intermediate=20,advanced=20")
    p.add_argument("--compare-lambda", default="0,5", help="comma-separated EWC lambdas to run (0 = no EWC)")
    p.add_argument("--fisher-precision", default="fp32", choices=("fp32", "bf16"),
                   help="storage precision of the Fisher and anchor")
    p.add_argument("--fisher", default="gold", help="Fisher estimate for EWC: gold (gradients of the reference "
                   "solutions' log-likelihood), sample (of completions drawn from the model), or gold,sample (an arm "
                   "for each, per lambda > 0)")
    p.add_argument("--eval-splits", help="splits evaluated after every stage, e.g. dev,test (choose lambda on dev, "
                   "report test; default: --eval-split)")
    p.add_argument("--results-dir", help="where the study's rows go: <dir>/<machine-id>/curriculum.jsonl (default "
                   "results, or $CPUGRPO_RESULTS_DIR)")
    p.add_argument("--run-dir", help="where to write the study (default runs/<time>-curriculum)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_curriculum, show=tables.show_curriculum)

    p = sub.add_parser("detect", help="hardware profile of this machine")
    p.add_argument("--save", action="store_true", help="write profiles/<id>/hardware.json and record the asv machine")
    p.add_argument("--isa-cap", help="emulate a lesser ISA: avx2, avx512, avx512_core_bf16")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles are saved")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_detect, show=tables.show_detect)

    p = sub.add_parser("probe", help="roofline microbenchmarks: GEMM fp32/bf16/int8 and memory bandwidth")
    p.add_argument("--threads", help="comma-separated thread counts (default 1..usable CPUs)")
    p.add_argument("--n", type=int, default=1024, help="GEMM size (n x n x n)")
    p.add_argument("--repeats", type=int, default=5, help="samples per measurement")
    p.add_argument("--bw-mb", type=int, default=256, help="MiB copied by the bandwidth probe")
    p.add_argument("--isa-cap", help="emulate a lesser ISA: avx2, avx512, avx512_core_bf16")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles are saved")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_probe, show=tables.show_probe)

    p = sub.add_parser("rollout-bench", help="decode speed of fp32 / bf16 / int8 rollout snapshots, interleaved")
    p.add_argument("--model", default="small", help="preset or model directory")
    p.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated rollout precisions")
    p.add_argument("--batch-size", type=int, default=8, help="sequences decoded together")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated per sequence (forced)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per precision")
    p.add_argument("--threads", type=int, help="intra-op threads (default: every usable CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_rollout_bench, show=tables.show_rollout_bench)

    p = sub.add_parser("sweep", help="isolated trials over a grid of training settings")
    p.add_argument("--spec", help="TOML sweep spec with [sweep], [base] and [axes] tables")
    p.add_argument("--axis", action="append", help="name=v1,v2 (repeatable), e.g. --axis rollout_precision=fp32,int8")
    p.add_argument("--model", help="model for every point (overrides [base])")
    p.add_argument("--steps", type=int, help="measured steps per trial (after 1 warm-up step)")
    p.add_argument("--evaluate", action="store_true", help="also evaluate each trained trial on held-out problems")
    p.add_argument("--timeout", type=float, help="seconds before a trial is killed and recorded as failed")
    p.add_argument("--resume", action="store_true", help="skip trials already in the store")
    p.add_argument("--isa-cap", help="emulate a lesser ISA in every trial (avx2, avx512, avx512_core_bf16); "
                                     "results go under the emulated machine id. For fewer cores use taskset -c.")
    p.add_argument("--results-dir", default="results", help="where results/<machine-id>/trials.jsonl lives")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_sweep, show=tables.show_sweep)

    p = sub.add_parser("gate", help="the quality gate for one configuration's arithmetic (update and rollout "
                                    "precision, optimizer, adapter): tiny trained 200 steps against fp32")
    for name in ("update_precision", "rollout_precision", "optimizer", "adapter"):
        k = KNOBS[name]
        p.add_argument(k.flag_name(name), dest=name, choices=k.choices, help=k.help)
    p.add_argument("--threads", type=int, help="threads (default: every usable CPU)")
    p.add_argument("--memory-budget", type=float, dest="memory_budget_gb", help="GB a gate trial may use")
    p.add_argument("--learning-rate", type=float, help="the candidate's learning rate (default: the gate's, 3e-05)")
    p.add_argument("--results-dir", default="results", help="where results/<id>/trials.jsonl is appended")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    p.set_defaults(func=cmd_gate, show=tables.show_gate)

    p = sub.add_parser("tune", help="the main job: detect, probe, search, quality gate, recommend, report")
    p.add_argument("--quick", action="store_true", help="fewer arms and steps (about 5 minutes on 2 cores)")
    p.add_argument("--model", default="tiny", help="model to tune throughput on (the quality gate always uses tiny)")
    p.add_argument("--memory-budget", type=float, dest="memory_budget_gb",
                   help="GB a training run may use (default 80%% of available RAM)")
    p.add_argument("--time-budget", type=float, dest="time_budget_min",
                   help="minutes; the search stops starting new axes after this")
    p.add_argument("--isa-cap", help="tune an emulated lesser ISA (avx2, avx512, avx512_core_bf16); for fewer cores "
                                     "run under taskset -c")
    p.add_argument("--check-grid", action="store_true",
                   help="also measure the full grid of the same axes and compare the tuner's pick with its best")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=None,
                   help="skip points predicted below --prune-fraction of the best so far or over the memory budget "
                        "(default on; runs/prune.py)")
    p.add_argument("--prune-fraction", type=float, help="predicted fraction of the best so far below which a point "
                                                        "is skipped (default 0.8)")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles/<id>/recommended.toml is written")
    p.add_argument("--results-dir", default="results", help="where results/<id>/trials.jsonl is appended")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_tune, show=tables.show_tune)

    p = sub.add_parser("baseline", help="the recommended config vs TRL's GRPOTrainer (its defaults; CPU settings), "
                                        "in rotating order")
    p.add_argument("--config", help="config to compare (default profiles/<id>/recommended-<model>.toml if tuned for "
                                       "that model, else recommended.toml)")
    p.add_argument("--model", help="override the config's model, e.g. small")
    p.add_argument("--batch-size", type=int, help="override completions per step (same on every side)")
    p.add_argument("--pairs", type=int, help="rotations of the three sides (default 5; 3 from the 494M shape up)")
    p.add_argument("--steps", type=int, default=3, help="measured steps per trial (after 1 warm-up step)")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles live")
    p.add_argument("--results-dir", default="results", help="where trial rows are appended")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_baseline, show=tables.show_baseline)

    p = sub.add_parser("report", help="per-machine report (HTML + Markdown + plots) from trials, probes and asv")
    p.add_argument("--machine", help="machine id (default: this machine)")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles live")
    p.add_argument("--results-dir", default="results", help="where results/<id>/trials.jsonl lives")
    p.add_argument("--asv-dir", default=".asv/results", help="asv results directory (optional)")
    p.add_argument("--out-dir", default="reports", help="reports/<id>/ is written here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    p.set_defaults(func=cmd_report, show=tables.show_report)

    p = sub.add_parser("compare", help="the same configurations across machines, with ratios and hardware facts")
    p.add_argument("ids", nargs="+", help="machine ids (directories under profiles/)")
    p.add_argument("--reference", help="machine the ratios are relative to (default: the first id)")
    p.add_argument("--name", help="output folder name under reports/compare/")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles live")
    p.add_argument("--results-dir", default="results", help="where trials live")
    p.add_argument("--out-dir", default="reports", help="reports/compare/<name>/ is written here")
    p.add_argument("--predicted", action="store_true", help="add predicted rows (marked so) for configurations a "
                                                            "machine has not measured")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_compare, show=tables.show_compare)

    add_predict_parser(sub, _add_train_flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    from ..core.errors import CpugrpoError

    try:
        result = args.func(args)
    except CpugrpoError as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        print(f"cpugrpo {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"cpugrpo {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=str))
    else:
        args.show(result)
    return result.get("exit_code", 0) if isinstance(result, dict) else 0  # e.g. --seeds with a failed seed: 1


if __name__ == "__main__":
    sys.exit(main())
