"""The report's figures: pure functions from a tidy trials DataFrame (results.py) to matplotlib Figures.

Every function returns a Figure, also when its data are missing: then the figure says what is missing instead of
plotting, so a partial report still renders. Titles, labelled axes with units and legends on every plot.
"""

from __future__ import annotations

import textwrap

from .configs import KNOBS, item, row_labels, wrap  # KNOBS: one report column per knob of a trial's identity

PHASE_COLORS = {"rollout": "#4C72B0", "scoring": "#DD8452", "update": "#55A868"}


def _fig(title: str, size=(7.5, 4.5), ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size, squeeze=False)
    fig.suptitle(title, fontsize=12)
    return fig, list(axes[0])


def missing(title: str, why: str):
    """A placeholder that states what is missing: one line of text under the title, as small as it can be."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = wrap(f"{title}: not plotted: {why}".replace("`", ""), 7.5, 9)  # code spans are Markdown, not text
    fig = plt.figure(figsize=(7.5, 0.3 + 0.2 * (text.count("\n") + 1)))
    fig.text(0.01, 0.5, text, ha="left", va="center", fontsize=9, color="#555")
    return fig


def wide(df, metric: str):
    """One row per configuration (the KNOBS) with ``metric``: ``value`` is the median over every ok trial of that
    configuration (tuner, grid, sweeps, re-measures), ``ci_low``/``ci_high`` the lowest and highest step seen in any
    of them, ``n_trials`` how many; ``key``/``tag``/``date`` are the newest trial's. Repeats of a configuration
    minutes apart differ by up to ~25% on a shared VM: one figure shows them all through the range."""
    d = df[(df.benchmark == metric) & (df.status == "ok")]
    if "mode" in d:  # cpugrpo baseline's side A (plain TRL with its defaults) is not a cpugrpo configuration
        d = d[d["mode"].fillna("cpugrpo") == "cpugrpo"]
    if "tag" in d:  # quality-gate trials train another budget (learning rate, steps) for accuracy: not speed data
        d = d[~d["tag"].fillna("").astype(str).str.startswith("tune-gate")]
    if d.empty:
        return d
    d = d.sort_values("date")
    g = d.groupby(list(KNOBS), dropna=False)
    out = g.tail(1).set_index(list(KNOBS))
    out["value"] = g.value.median()
    if "ci_low" in d:
        out["ci_low"] = g.ci_low.min().fillna(out["value"])
        out["ci_high"] = g.ci_high.max().fillna(out["value"])
    out["n_trials"] = g.size()
    return out.reset_index()


def ref_group(d, others: list, vary: str) -> dict:
    """The setting of ``others`` to plot ``vary`` at: the group with the most values of ``vary``, ties broken by
    the highest throughput (so plots sit at the configuration a user would run)."""
    stats = d.groupby(others, dropna=False).agg(n=(vary, "nunique"), best=("value", "max"))
    key = stats.sort_values(["n", "best"], ascending=False).index[0]
    return dict(zip(others, key if isinstance(key, tuple) else (key,)))


def _select(d, ref: dict):
    mask = None
    for k, v in ref.items():
        m = d[k].isna() if (v is None or v != v) else d[k] == v  # threads None (every CPU) is NaN in the frame
        mask = m if mask is None else mask & m
    return d[mask]


def _fixed_title(ax, fixed: str, width_in: float) -> None:
    """The knobs every row of the axes shares, as the axes' title (wrapped to the figure's width)."""
    if fixed:
        ax.set_title(wrap(fixed, width_in, 8), fontsize=8)


def thread_scaling(df):
    """Throughput against the CPUs a configuration used, processes x threads per process (rows from before the
    processes knob ran one process): one line per process count, each point labelled with its layout and parallel
    efficiency against the ideal line, linear from the fewest CPUs measured."""
    title = "Scaling of GRPO throughput over processes x threads"
    d = wide(df, "trial.samples_per_s")
    if d.empty:
        return missing(title, "no successful trials")
    d = d[d.threads.notna()].copy()  # threads left to the default (every CPU) say nothing about scaling
    d["processes"] = (d["processes"].fillna(1) if "processes" in d else 1)  # rows before the knob: one process
    d["processes"], d["threads"] = d.processes.astype(int), d.threads.astype(int)
    d["layout"], d["cpus"] = [f"{p}x{t}" for p, t in zip(d.processes, d.threads)], d.processes * d.threads
    others = [k for k in KNOBS if k not in ("threads", "processes")]
    g = _select(d, ref_group(d, others, "layout")).sort_values(["cpus", "processes"]) if not d.empty else d
    if g.layout.nunique() < 2:
        return missing(title, "only one processes x threads layout was measured (run a sweep with --axis "
                              "threads=1,2,... or --axis processes=1,2)")
    fig, (ax,) = _fig(title)
    c0, v0 = g.cpus.iloc[0], g.value.iloc[0]
    for i, (p, s) in enumerate(g.groupby("processes")):
        ax.plot(s.cpus, s.value, "o-", color=f"C{i}", label=f"{p} process{'es' if p > 1 else ''} (median)")
        ax.errorbar(s.cpus, s.value, yerr=[s.value - s.ci_low, s.ci_high - s.value], fmt="none", ecolor=f"C{i}",
                    capsize=4, label="min-max over measured steps" if i == 0 else None)
    xs = sorted(g.cpus.unique())
    ax.plot(xs, [v0 * x / c0 for x in xs], "--", color="grey", label="ideal (linear from the fewest CPUs)")
    for lay, c, v in zip(g.layout, g.cpus, g.value):
        ax.annotate(f"{lay}: {v / v0 / (c / c0):.0%} eff.", (c, v), textcoords="offset points", xytext=(6, -12),
                    fontsize=8)
    ax.set_xlabel("CPUs used: processes x threads per process")
    ax.set_ylabel("samples/s (completions per second)")
    ax.set_xticks(xs)
    _fixed_title(ax, row_labels(g, skip=("threads", "processes"))[1], 7.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def batch_memory(df):
    title = "Throughput and peak memory against prompts per step"
    s, m = wide(df, "trial.samples_per_s"), wide(df, "trial.peak_rss_mb")
    if s.empty or s.prompts_per_step.nunique() < 2:
        return missing(title, "fewer than two prompts-per-step values were measured")
    fig, (a1, a2) = _fig(title, size=(10, 4.2), ncols=2)
    others = [k for k in KNOBS if k not in ("prompts_per_step", "gradient_checkpointing")]
    ref = ref_group(s, others, "prompts_per_step")
    shown = _select(s, ref)
    _, fixed = row_labels(shown, skip=("prompts_per_step", "gradient_checkpointing"))
    for gc, color in ((False, "#4C72B0"), (True, "#C44E52")):
        ss = _select(s, {**ref, "gradient_checkpointing": gc}).sort_values("prompts_per_step")
        mm = _select(m, {**ref, "gradient_checkpointing": gc}).sort_values("prompts_per_step")
        label = item("gradient_checkpointing", gc)
        if not ss.empty:
            a1.plot(ss.prompts_per_step, ss.value, "o-", color=color, label=label)
        if not mm.empty:
            a2.plot(mm.prompts_per_step, mm.value, "s-", color=color, label=label)
    for ax, ylabel in ((a1, "samples/s"), (a2, "peak RSS (MiB, kernel high-water mark)")):
        ax.set_xlabel("prompts per step (x num_generations = completions per step)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted(shown.prompts_per_step.unique()))  # only the values plotted: no empty ticks
        ax.legend(fontsize=8)
    fig.text(0.5, 0.9, wrap("every point: " + fixed, 10, 8), ha="center", va="top", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9 - 0.04 * wrap(fixed, 10, 8).count("\n")))
    return fig


def pareto(df, recommended: dict | None = None, gate: dict | None = None):
    """Throughput against peak RSS; the front joined; accuracy from the quality gate per precision pair."""
    from ..runs.analysis import pareto_front

    title = "Pareto front: throughput against peak memory"
    s, m = wide(df, "trial.samples_per_s"), wide(df, "trial.peak_rss_mb")
    if s.empty or m.empty:
        return missing(title, "no successful trials with both throughput and memory")
    d = s.merge(m[["key", "value"]].rename(columns={"value": "rss"}), on="key")
    model = recommended["model"] if recommended and (d.model == recommended["model"]).any() else d.model.mode()[0]
    d = d[d.model == model]  # one model per front: trading throughput for memory across models means nothing
    fig, (ax,) = _fig(title + f" ({model})", size=(8, 5))
    pts = list(zip(d.value, d.rss))
    front = pareto_front(pts)
    ax.scatter(d.rss, d.value, color="#8C8C8C", s=25, label="configuration (median over its trials)")
    f = d.iloc[front].sort_values("rss")
    ax.plot(f.rss, f.value, "o-", color="#4C72B0", label="Pareto front")
    rec = _select(d, recommended) if recommended else d.iloc[0:0]
    rec_key = rec.key.iloc[0] if not rec.empty else None
    f = f.sort_values("value", ascending=False)
    labels, fixed = row_labels(f)  # every knob that differs along the front; the rest said once
    notes = []
    for i, ((_, r), lab) in enumerate(zip(f.iterrows(), labels), 1):
        acc = (gate or {}).get(f"{r.update_precision}/{r.rollout_precision}")
        # beside the point, clear of the recommended star (which is wider than a front marker)
        ax.annotate(str(i), (r.rss, r.value), textcoords="offset points", ha="left", va="center", fontsize=8,
                    xytext=(11 if r.key == rec_key else 6, 0), fontweight="bold", color="#4C72B0", zorder=6,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        note = (f"{i}: {r.value:.1f} samples/s, {r.rss:.0f} MiB" + (f" - {lab}" if lab else "") + "; "
                + (f"gate accuracy {acc:.1%}" if acc is not None else "precision pair not gated"))
        notes += textwrap.wrap(note, 112, subsequent_indent="   ")
    head = textwrap.wrap("Pareto front (numbered on the plot)" + (f"; every point on it: {fixed}" if fixed else "")
                         + ":", 112, subsequent_indent="   ")
    notes = head + notes
    height = 5 + 0.14 * len(notes)
    fig.set_size_inches(8, height)
    fig.text(0.02, 0.01, "\n".join(notes), fontsize=7, va="bottom", family="monospace")
    if not rec.empty:
        r = rec.iloc[0]
        ax.scatter([r.rss], [r.value], marker="*", s=260, color="#C44E52", zorder=5, label="recommended")
    ax.set_xlabel("peak RSS (MiB)")
    ax.set_ylabel("samples/s")
    ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.1, y=0.1)
    fig.tight_layout(rect=(0, (len(notes) * 0.12 + 0.15) / height, 1, 1))
    return fig


def phases(df):
    title = "Where a GRPO step's time goes, by update and rollout precision"
    ro, sc, up = (wide(df, f"trial.{p}_s") for p in ("rollout", "scoring", "update"))
    if ro.empty:
        return missing(title, "no successful trials with phase timings")
    d = ro[["key", *KNOBS, "value"]].rename(columns={"value": "rollout"})
    d = d.merge(sc[["key", "value"]].rename(columns={"value": "scoring"}), on="key")
    d = d.merge(up[["key", "value"]].rename(columns={"value": "update"}), on="key")
    # one bar per precision pair, at the configuration (every other knob) that has the most pairs
    pair = ("update_precision", "rollout_precision")
    others = [k for k in KNOBS if k not in pair]
    d["pair"] = d.update_precision + "/" + d.rollout_precision
    d["value"] = 1.0 / (d["rollout"] + d["scoring"] + d["update"])
    d = _select(d, ref_group(d, others, "pair")).drop_duplicates(list(pair))
    d = d.sort_values(["update_precision", "rollout_precision"])
    fig, (ax,) = _fig(title, size=(11, 4.8))
    # one word per line: "update bf16-autocast" side by side overlapped its neighbours
    labels = [f"update\n{u}\nrollout\n{r}" for u, r in zip(d.update_precision, d.rollout_precision)]
    bottom = [0.0] * len(d)
    for phase in ("rollout", "scoring", "update"):
        ax.bar(labels, d[phase], bottom=bottom, color=PHASE_COLORS[phase], label=phase)
        bottom = [b + v for b, v in zip(bottom, d[phase])]
    ax.set_ylabel("seconds per step (median)")
    _fixed_title(ax, row_labels(d, skip=pair)[1], 11)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roofline(rows: list[dict], limit: int = 16):
    """``rows`` from roofline.roofline_rows: the update's MFU (executed FLOPs) and decode tokens/s against its
    bandwidth bound, numbered, with every knob of each configuration listed under the plot."""
    title = "Against the roofline (measured GEMM peak and copy bandwidth)"
    if not rows:
        return missing(title, "needs trials that recorded executed work, and probes.json (run `cpugrpo tune`)")
    shown = rows[:limit]
    n = len(shown)
    height = 3.2 + 0.3 * n + 0.16 * (n + 2)
    fig, (a1, a2) = _fig(title, size=(11, height), ncols=2)
    y = list(range(n))[::-1]
    mfu = [r["mfu"] or 0 for r in shown]
    a1.barh(y, mfu, color="#55A868")
    a1.axvline(1.0, color="grey", ls="--", lw=1)
    a1.set_yticks(y, [str(i + 1) for i in range(n)])
    a1.set_xlabel("executed update FLOP/s / GEMM peak (MFU)")
    a1.set_xlim(0, max(1.05, max(mfu) * 1.1))
    a1.set_title("update: counted FLOPs / update time / peak", fontsize=9)
    dec = [r["decode_tokens_per_s"] or 0 for r in shown]
    bound = [r["decode_bound_tokens_per_s"] or 0 for r in shown]
    a2.barh([i + 0.2 for i in y], bound, height=0.4, color="#CCCCCC",
            label="bound: tokens x GB/s / (decode steps x weight bytes)")
    a2.barh([i - 0.2 for i in y], dec, height=0.4, color="#4C72B0", label="measured")
    a2.set_yticks(y, [str(i + 1) for i in range(n)])
    a2.set_xlabel("decode tokens/s (completion tokens / rollout time less refresh)")
    a2.set_title("rollout: memory-bandwidth bound (none drawn: weights fit in cache)", fontsize=9)
    a2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    notes = [f"{i + 1}: MFU {r['mfu']:.2f}, {r['label']}" for i, r in enumerate(shown)]
    if len(rows) > n:
        notes.append(f"... {len(rows) - n} more configurations in `cpugrpo report --json`")
    fig.text(0.01, 0.01, "\n".join(notes), fontsize=6.5, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, (0.16 * (len(notes) + 1) + 0.5) / height, 1, 1))
    return fig


def accuracy(df):
    title = "Held-out accuracy by rollout and evaluation precision (95% Wilson intervals)"
    d = df[(df.benchmark == "trial.accuracy") & (df.status == "ok")] if "benchmark" in df else df.iloc[0:0]
    if d.empty:
        return missing(title, "no trials evaluated held-out accuracy (run `cpugrpo tune` or a sweep with --evaluate)")
    d = d.sort_values("date").drop_duplicates(["key", "eval_precision"], keep="last")
    fig, (ax,) = _fig(title, size=(max(8.0, 1.5 * len(d)), 4.8))
    labels = [f"update {u}\nrollout {r}\neval {e}" for u, r, e in zip(d.update_precision, d.rollout_precision,
                                                                     d.eval_precision)]
    # points of different configurations (or runs) must not share a label: add every knob that differs
    vary, fixed = row_labels(d, skip=("update_precision", "rollout_precision"), sep="\n")
    labels = [f"{lab}\n{v}" if v else lab for lab, v in zip(labels, vary)]
    _fixed_title(ax, fixed, max(8.0, 1.5 * len(d)))
    if len(set(labels)) < len(labels):  # same configuration, separate runs (e.g. a quick and a full tune's gate)
        labels = [f"{lab}\n{r.date:%m-%d %H:%M}" if r.date == r.date else lab
                  for lab, (_, r) in zip(labels, d.iterrows())]
    x = range(len(d))
    ax.errorbar(list(x), d.value * 100, yerr=[(d.value - d.ci_low) * 100, (d.ci_high - d.value) * 100], fmt="o",
                capsize=5, color="#4C72B0", label="accuracy after the same short training")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("held-out exact match (%)")
    ax.margins(x=0.3)
    if d.random_weights.fillna(False).any():
        ax.text(0.5, 0.95, "random-weight model: accuracy not meaningful", transform=ax.transAxes, ha="center",
                color="#C44E52")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def history(asv_df):
    """A few headline asv series across commits (one environment: the one with the most commits), each relative to
    its value at the oldest commit: step time and samples/s at the default point, GEMM and copy peaks."""
    title = "History across commits (asv)"
    if asv_df is None or asv_df.empty:
        return missing(title, "no asv results for this machine (run `asv run`)")
    d = asv_df[asv_df.status == "ok"]
    if d.empty or d.commit.nunique() < 2:
        return missing(title, f"asv results hold {asv_df.commit.nunique()} commit(s); history needs two or more")
    env = d.groupby("env").commit.nunique().idxmax()
    d = d[d.env == env]
    if d.commit.nunique() < 2:
        return missing(title, "no single asv environment holds two or more commits")
    top = lambda col: d[col].max() if col in d else None
    default = {"prompts_per_step": 4, "update_precision": "fp32", "rollout_precision": "fp32",
               "gradient_checkpointing": False, "threads": top("threads")}
    series = []
    for bench in ("bench_grpo.GRPOStep.time_step", "bench_grpo.GRPOTrack.track_samples_per_s"):
        for model in ("tiny", "small"):
            g = d[(d.benchmark == bench) & (d.get("model") == model)]
            for k, v in default.items():
                if k in g:
                    g = g[g[k] == v]
            series.append((f"{bench.split('.')[-1]} {model} (default point)", g))
    for dtype in ("fp32", "bf16"):
        g = d[(d.benchmark == "bench_probes.GEMM.track_gflops") & (d.get("dtype") == dtype)]
        series.append((f"GEMM {dtype} GFLOP/s", g[g.threads == g.threads.max()] if not g.empty else g))
    g = d[d.benchmark == "bench_probes.Bandwidth.track_copy_gbps"]
    series.append(("copy GB/s", g[g.threads == g.threads.max()] if not g.empty else g))
    order = d.groupby("commit").date.min().sort_values().index.tolist()
    fig, (ax,) = _fig(title, size=(9, 4.5))
    drawn = 0
    for label, g in series:
        g = g.drop_duplicates("commit").set_index("commit").reindex(order).value
        if g.notna().sum() < 2:
            continue
        ref = g.dropna().iloc[0]
        ok = g.notna().to_numpy()
        ax.plot([i for i, m in enumerate(ok) if m], (g / ref)[ok], "o-", label=label)
        drawn += 1
    if not drawn:
        plt_close(fig)
        return missing(title, "no headline series has values at two or more commits")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([c[:8] for c in order])
    ax.set_xlabel(f"commit (oldest first), environment {env}")
    ax.set_ylabel("value / value at the oldest commit")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plt_close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)
