"""`cpugrpo baseline`: a cpugrpo config against two peers, TRL's GRPOTrainer as shipped and as a CPU user sets it.

Three sides, each trial in its own process (trial.py): ``cpugrpo`` (the config), ``trl-defaults`` (TRL 1.16's own
defaults; ``use_cpu=True`` is the only change, without it TRL refuses to start) and ``trl-cpu`` (also
``bf16=False``, ``gradient_checkpointing=False``: what an informed CPU user switches off). All three share the work
(core.config.WORKLOAD_KEYS: model, threads, completions per step, group size, max completion length, seed, reward
weights; the same prompts and reward functions; the same steps). A TRL row records the settings read back from the
``GRPOConfig`` it built (``trl_args``, train/trl_peers.py).

A pair runs every side once, in an order that rotates from pair to pair (A B C, B C A, C A B, ...) so drift
(thermal, other load) hits all sides alike. The headline ratio is cpugrpo / peer on the parent's *outside* clock:
samples over the measured steps / the time between the parent's own stamps of the warm-up's end and the last
step's end (a pipe; trial.py). The ratio on the child's own clock (its summary) is kept beside it. Each ratio is
per pair, then the median over the complete pairs (a pair with a failed side is counted and dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.config import WORKLOAD_KEYS
from ..core.stats import median_and_spread
from ..train.trl_peers import LABELS, PEERS

SIDES = ("cpugrpo", *PEERS)   # the rotation of pair 0; later pairs rotate it
HEADLINE = "trl-cpu"          # the peer a CPU user would actually run: its ratio leads every output
SHOWN = (HEADLINE, *(p for p in PEERS if p != HEADLINE))  # peers in the order tables show them
LARGE_SHAPE = "qwen2-0.5b"    # models at least this many parameters get fewer default pairs (each pair takes minutes)
PAIRS_SMALL, PAIRS_LARGE = 5, 3


def peer_config(cfg) -> dict:
    """What a TRL side is given: the shared work; the rest is TRL's (read back by the child, train/trl_peers.py)."""
    shared = {k: v for k, v in cfg.to_dict().items() if k in WORKLOAD_KEYS}
    return {**shared, "shared_prefix": False}  # TRL has no such thing


def pair_order(i: int, sides=SIDES) -> tuple:
    """The order of pair ``i``: the sides rotated by ``i``.

    >>> [" ".join(s[0] for s in pair_order(i, ("A", "B", "C"))) for i in range(4)]
    ['A B C', 'B C A', 'C A B', 'A B C']
    """
    k = i % len(sides)
    return tuple(sides[k:]) + tuple(sides[:k])


def default_pairs(n_params: int, large_params: int) -> int:
    """Pairs when --pairs is not given: fewer for models of ``large_params`` parameters or more.

    >>> default_pairs(5_900_000, 494_000_000), default_pairs(494_000_000, 494_000_000)
    (5, 3)
    """
    return PAIRS_LARGE if n_params >= large_params else PAIRS_SMALL


@dataclass(frozen=True)
class BaselineOptions:
    """What `cpugrpo baseline` compares. Validated on construction: a bad value is a ConfigError naming the flag
    and the fix."""
    config: str | None = None        # --config; None: the machine's recommendation for the model (see config_path)
    model: str | None = None         # --model: over the config's model
    batch_size: int | None = None    # --batch-size: over the config's (same on every side)
    pairs: int | None = None         # --pairs: rotations of the three sides; None: default_pairs for the model
    steps: int = 3                   # --steps: measured steps per trial
    profiles_dir: str = "profiles"   # --profiles-dir
    results_dir: str = "results"     # --results-dir

    def __post_init__(self):
        from ..core.options import at_least
        from ..train.models import resolve

        if self.pairs is not None:
            at_least("--pairs", self.pairs, 1)
        at_least("--steps", self.steps, 1)
        if self.batch_size is not None:
            at_least("--batch-size", self.batch_size, 1)
        if self.model is not None:
            resolve(self.model)

    def config_path(self, machine_id: str) -> str:
        """``--config``, else the model's own recommendation if it was tuned, else the machine's default one."""
        import os

        from .recommend import file_name

        if self.config is not None:
            return self.config
        own = os.path.join(self.profiles_dir, machine_id, file_name(self.model or "tiny"))
        return own if os.path.exists(own) else os.path.join(self.profiles_dir, machine_id, "recommended.toml")

    def pairs_for(self, model: str) -> int:
        """``--pairs``, else by the model's parameter count (train/memory.shape_of, no weights loaded)."""
        from ..train.memory import shape_of

        if self.pairs is not None:
            return self.pairs
        return default_pairs(shape_of(model).n_params, shape_of(LARGE_SHAPE).n_params)


def baseline(opts: BaselineOptions, progress: bool = True) -> dict:
    """Resolve the config to compare, check it fits, run the rotating pairs and record the run."""
    import os

    from ..core.config import resolve_config
    from ..core.errors import ConfigError
    from ..core.store import TrialStore
    from ..hw import hardware
    from ..hw.runtime import resolve_threads
    from ..train.memory import fit_batch, shape_of

    mid = hardware.detect(with_torch=False).machine_id
    config = opts.config_path(mid)
    if not os.path.exists(config):
        if opts.config is not None:
            raise ConfigError(f"config file {config} does not exist: check the path")
        # an untuned machine compares cpugrpo's defaults, and says so (the row records no config file)
        import sys

        print(f"no recommended config at {config}: comparing cpugrpo's defaults (run `cpugrpo tune` for this "
              f"machine's own)", file=sys.stderr)
        config = None
    # the engine's work, as the tuner measured it: TRL's reward settings, no KL anchor (TRL's peers run none)
    cfg, _ = resolve_config(config, {"model": opts.model, "batch_size": opts.batch_size}, recipe=False)
    resolve_threads(cfg.threads)
    if cfg.beta > 0:  # TRL's peers would run no reference model: not the same work
        raise ConfigError(f"beta {cfg.beta} adds a reference-model pass the TRL peers do not run: compare with "
                          f"beta = 0 in the config")
    fit_batch(cfg, shape_of(cfg.model))  # an unknown model, or a batch that cannot fit: refused before any trial
    store = TrialStore.for_machine(mid, opts.results_dir)
    out = run_baseline(cfg, pairs=opts.pairs_for(cfg.model), measured_steps=opts.steps, store=store,
                       machine_id=mid, progress=progress)
    out["config_file"] = config
    out["baselines_file"] = str(record(out, mid, config, opts.results_dir))
    return out


def run_baseline(cfg, pairs: int = PAIRS_SMALL, measured_steps: int = 3, store=None, machine_id=None, progress=True,
                 timeout_s: float = 1800) -> dict:
    """``pairs`` rotations of the three sides; the summary of ``summarize_baseline``."""
    from tqdm.auto import tqdm

    from .trial import TrialSpec, run_trial

    specs = {"cpugrpo": TrialSpec(config=cfg.to_dict(), measured_steps=measured_steps, timeout_s=timeout_s,
                                  tag="baseline-cpugrpo")}
    for peer in PEERS:
        specs[peer] = TrialSpec(config=peer_config(cfg), measured_steps=measured_steps, mode=peer,
                                timeout_s=timeout_s, tag=f"baseline-{peer}")
    rows = {side: [] for side in SIDES}
    orders = []
    bar = tqdm(total=len(SIDES) * pairs, desc="baseline", unit="trial", disable=not progress, leave=False)
    for i in range(pairs):
        orders.append(list(pair_order(i)))
        for side in orders[-1]:
            row = run_trial(specs[side], machine_id)
            if store is not None:
                store.append(row)
            rows[side].append(row)
            bar.update(1)
            sps = _outside_sps(row)
            bar.set_postfix(last=f"{side} {sps:.1f} samples/s" if sps else f"{side} failed")
    bar.close()
    return summarize_baseline(rows, cfg, orders)


def _outside_sps(row) -> float | None:
    """samples/s on the parent's clock (step stamps on a pipe), the headline's clock."""
    if row.get("status") != "ok":
        return None
    return (row.get("outside") or {}).get("samples_per_s") or None


def _inside_sps(row) -> float | None:
    """samples/s on the child's own clock: samples over the measured steps / the child's summed step times."""
    if row.get("status") != "ok":
        return None
    s = row.get("summary") or {}
    return s.get("total_samples_per_s") or None


def _mean_completion_tokens(rows: list[dict]) -> float | None:
    """Mean tokens per completion over the measured steps of the ok rows (TRL: up to EOS, from its own log)."""
    tokens = done = 0
    for r in rows:
        if r.get("status") != "ok":
            continue
        warmup = (r.get("spec") or {}).get("warmup_steps", 1)
        for s in (r.get("steps") or [])[warmup:]:
            tokens, done = tokens + s["completion_tokens"], done + s["completions"]
    return tokens / done if done and tokens else None


def _side(rows: list[dict]) -> dict:
    peaks = [(r.get("outside") or {}).get("os_peak_rss_mb") for r in rows if r.get("status") == "ok"]
    peaks = [p for p in peaks if p]
    return {"samples_per_s": median_and_spread([v for v in map(_outside_sps, rows) if v]),
            "samples_per_s_inside": median_and_spread([v for v in map(_inside_sps, rows) if v]),
            "peak_rss_mb": max(peaks) if peaks else None,  # the kernel's high-water mark (wait4), worst trial
            "mean_completion_tokens": _mean_completion_tokens(rows),
            "trial_ids": [r.get("trial_id") for r in rows]}


def _ratios(ours: list[dict], theirs: list[dict], clock) -> list[float]:
    out = []
    for a, b in zip(ours, theirs):
        x, y = clock(a), clock(b)
        if x and y:
            out.append(x / y)
    return out


def summarize_baseline(rows: dict, cfg, orders: list | None = None) -> dict:
    """Pure: ``rows`` maps each side (SIDES) to its trial rows, pair by pair. Per peer: the per-pair ratio
    cpugrpo / peer on the outside clock (``ratios``, median ``ratio``, ``range``) and on the inside clock
    (``ratios_inside``, ``ratio_inside``), over the pairs where both sides are ok (``pairs``; the rest are
    ``failed_pairs``)."""
    ours = rows["cpugrpo"]
    n = len(ours)
    peers = {}
    for peer in PEERS:
        theirs = rows.get(peer, [])
        complete = [i for i, (a, b) in enumerate(zip(ours, theirs)) if _outside_sps(a) and _outside_sps(b)]
        outside = [_outside_sps(ours[i]) / _outside_sps(theirs[i]) for i in complete]
        inside = _ratios([ours[i] for i in complete], [theirs[i] for i in complete], _inside_sps)
        first_ok = next((r for r in theirs if r.get("status") == "ok"), {})
        peers[peer] = {"label": LABELS[peer], "ratio": median_and_spread(outside)["median"] if outside else None,
                       "ratio_inside": median_and_spread(inside)["median"] if inside else None,
                       "pairs": len(complete), "failed_pairs": n - len(complete), "ratios": outside,
                       "ratios_inside": inside, "range": [min(outside), max(outside)] if outside else None,
                       **_side(theirs), "trl_args": first_ok.get("trl_args"), "config": first_ok.get("config")}
    ok = [r for r in ours if r.get("status") == "ok"]
    return {"config": cfg.to_dict(), "pairs": n, "order": orders or [list(pair_order(i)) for i in range(n)],
            "clock": "outside: samples over the measured steps / the parent's time from the warm-up's end to the "
                     "last step's end (step stamps on a pipe); ratio_inside: the child's own clock",
            "headline": HEADLINE, "peers": peers, "cpugrpo": _side(ours),
            "trial_ids": {side: [r.get("trial_id") for r in rs] for side, rs in rows.items()},
            "failures": [f"{side}: {r.get('reason')}" for side, rs in rows.items() for r in rs
                         if r.get("status") != "ok"],
            "commit": ok[0].get("environment", {}).get("commit") if ok else None,
            "started_at": min((r.get("started_at") or 0 for rs in rows.values() for r in rs), default=None)}


def ratio_text(peer: dict) -> str:
    """One peer's outside-clock ratio with its pairs and range, and the inside-clock ratio.

    >>> ratio_text({"ratio": 2.0, "ratio_inside": 2.1, "pairs": 3, "failed_pairs": 1, "range": [1.5, 2.5]})
    '2.00x (3 pairs, 1.50..2.50; 1 failed) outside clock; 2.10x inside'
    """
    if peer.get("ratio") is None:
        return f"no complete pair ({peer.get('failed_pairs', 0)} failed)"
    lo, hi = peer["range"]
    failed = f"; {peer['failed_pairs']} failed" if peer.get("failed_pairs") else ""
    inside = f"; {peer['ratio_inside']:.2f}x inside" if peer.get("ratio_inside") is not None else ""
    return f"{peer['ratio']:.2f}x ({peer['pairs']} pairs, {lo:.2f}..{hi:.2f}{failed}) outside clock{inside}"


def cpugrpo_settings(c: dict) -> str:
    """A cpugrpo config's settings that differ between runs, in words (``c``: a config dict)."""
    return (f"{c.get('threads') or 'all'} threads, {c['update_precision']} update, {c['rollout_precision']} rollout, "
            f"shared prefix {'on' if c.get('shared_prefix') else 'off'}"
            f"{', checkpointing' if c.get('gradient_checkpointing') else ''}")


def trl_settings(trl_args: dict | None) -> str:
    """What a TRL side ran with, in words, from its read-back ``trl_args``.

    >>> trl_settings({"bf16": True, "gradient_checkpointing": True, "learning_rate": 1e-6, "torch_threads": 2,
    ...               "rollout_dtype": "bfloat16"})
    'bf16 autocast, checkpointing, lr 1e-06, 2 threads, rollout in bfloat16'
    """
    if not trl_args:
        return "not read back (no ok trial)"
    parts = ["bf16 autocast" if trl_args.get("bf16") else "fp32",
             "checkpointing" if trl_args.get("gradient_checkpointing") else "no checkpointing",
             f"lr {trl_args.get('learning_rate'):g}", f"{trl_args.get('torch_threads')} threads"]
    if trl_args.get("rollout_dtype"):
        parts.append(f"rollout in {trl_args['rollout_dtype']}")
    return ", ".join(parts)


def record(summary: dict, machine_id: str, config_file: str | None, root="results") -> Path:
    """Append one baseline run (its summary and trial ids) to ``results/<machine-id>/baselines.jsonl``, which the
    report reads; the trials themselves are in trials.jsonl."""

    from ..core.paths import portable
    from ..core.store import TrialStore

    store = TrialStore(Path(root) / machine_id / "baselines.jsonl")
    store.append({**summary, "machine_id": machine_id, "config_file": portable(config_file)})  # no home/temp path
    return store.path
