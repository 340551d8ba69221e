"""Human-readable tables for the CLI's results (``--json`` prints the same dicts raw). Printing only."""

from __future__ import annotations

import json
import sys


def table(rows: list[tuple], header: tuple | None = None) -> str:
    rows = [tuple(str(c) for c in r) for r in ([header] if header else []) + rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def show_seeds(r: dict) -> None:
    rows = [(run["seed"], f"{run['before']:.1%}", f"{run['after']:.1%}",
             f"{run['change']['difference'] * 100:+.1f} [{run['change']['ci95'][0] * 100:+.1f}, "
             f"{run['change']['ci95'][1] * 100:+.1f}]", run["split"], f"{run['wall_s'] / 60:.1f}")
            for run in r["runs"]]
    print(table(rows, ("seed", "before", "after", "gain, points [95% paired CI]", "split", "minutes")))
    for f in r["failures"]:
        print(f"seed {f['seed']} FAILED (exit {f['returncode']}): {f['reason']}")
    if r.get("mean_change") is not None:
        sd = f", sd {r['sd_change'] * 100:.1f}" if r.get("sd_change") is not None else ""
        print(f"mean gain over {len(r['runs'])} seeds: {r['mean_change'] * 100:+.1f} points{sd}; every seed's "
              f"interval above 0: {'yes' if r['every_interval_above_zero'] else 'no'}")


def show_ranks(m: dict) -> None:
    """A data-parallel run's ranks: where each ran, its median phases over the measured steps, its peak RSS."""
    print(f"data-parallel: {m['world_size']} ranks ({m['nnodes']} node(s) x {m['processes']} processes x "
          f"{m['threads_per_process']} threads), {m['backend']}; weights agree: {m['weights_agree']}")
    rows = [(r["rank"], r["node_rank"], ",".join(map(str, r["cpus"])), r["threads"],
             *(f"{r['phases'].get(k, float('nan')):.3f}" for k in ("wall_s", "rollout_s", "scoring_s", "update_s",
                                                                   "communication_s")),
             f"{r['peak_rss_mb']:.0f}") for r in m["ranks"]]
    print(table(rows, ("rank", "node", "CPUs", "threads", "step (s)", "rollout", "scoring", "update", "comm",
                       "peak RSS (MiB)")))
    out = m.get("outside", {})
    rate = f"{out['samples_per_s']:.2f} samples/s over the measured steps, " if out.get("samples_per_s") else ""
    print(f"outside clock: {rate}{out.get('wall_s', 0):.1f} s in all; peak RSS summed over ranks "
          f"{m['peak_rss_mb_sum']:.0f} MiB")


def show_train(m: dict) -> None:
    if m.get("kind") == "seeds":
        return show_seeds(m)
    if "model" not in m:  # another node of a data-parallel run: rank 0 (node 0) holds the run itself
        print(m.get("note", ""))
        return show_ranks(m)
    s = m["summary"]
    print(f"run: {m['run_dir']}   model: {m['model']}   threads: {m['effective']['threads']}   "
          f"batch: {m['effective']['batch_size']} ({m['effective']['prompts_per_step']} prompts x "
          f"{m['config']['num_generations']})")
    if m.get("note"):
        print(f"NOTE: {m['note']}")
    e = m["effective"]
    print(f"effective: torch threads {e.get('torch_threads')}, ATen {e.get('cpu_capability')}, oneDNN bf16 kernel "
          f"{e.get('bf16_matmul')}, {e.get('allocator')}")
    for flag in e.get("flags", []):
        print(f"WARNING: setting did not take effect: {flag}")
    if s.get("measured_steps"):
        rows = []
        for key, label, fmt in (("wall_s", "step (s)", "{:.3f}"), ("rollout_s", "  rollout (s)", "{:.3f}"),
                                ("scoring_s", "  scoring (s)", "{:.4f}"), ("update_s", "  update (s)", "{:.3f}"),
                                ("samples_per_s", "samples/s", "{:.2f}"), ("tokens_per_s", "completion tokens/s",
                                                                          "{:.1f}"),
                                ("cpu_util", "CPU utilisation", "{:.2f}"), ("peak_rss_mb", "peak RSS (MiB)",
                                                                           "{:.0f}")):
            v = s[key]
            rows.append((label, fmt.format(v["median"]), f"{fmt.format(v['min'])} .. {fmt.format(v['max'])}"))
        print(table(rows, ("measured steps: median", f"n={s['measured_steps']}", "min .. max")))
        w = s["warmup_steps"][0]
        print(f"warm-up step (excluded): {w['wall_s']:.2f} s; OS peak RSS {s['peak_rss_mb_os']:.0f} MiB")
    else:
        w = s["warmup_steps"][0]
        print(f"only the warm-up step ran: {w['wall_s']:.2f} s (rollout {w['rollout_s']:.2f}, scoring "
              f"{w['scoring_s']:.3f}, update {w['update_s']:.2f}); samples/s {w['samples_per_s']:.2f}")
    if m.get("world_size"):
        show_ranks(m)
    b, a, c = m["accuracy_before"], m["accuracy_after"], m["accuracy_change"]
    if b is None or a is None:
        print(f"accuracy: not evaluated ({m.get('note', 'no evaluation')})")
        return
    rows = []
    for level in list(b["by_difficulty"]) + ["overall"]:
        x = b["overall"] if level == "overall" else b["by_difficulty"][level]
        y = a["overall"] if level == "overall" else a["by_difficulty"][level]
        rows.append((level, f"{x['accuracy']:.1%} [{x['ci95'][0]:.1%}, {x['ci95'][1]:.1%}]",
                     f"{y['accuracy']:.1%} [{y['ci95'][0]:.1%}, {y['ci95'][1]:.1%}]"))
    print(table(rows, ("held-out accuracy", "before (95% CI)", "after (95% CI)")))
    print(f"change: {c['difference']:+.1%}  95% CI [{c['ci95'][0]:+.1%}, {c['ci95'][1]:+.1%}] ({c['method']})")


def show_eval(r: dict) -> None:
    src = r.get("evaluated_on", {})
    where = f"{src['data']} ({src['split']})" if "data" in src else f"synthetic {src.get('split', 'test')} split"
    print(f"model: {r['model']}   precision: {r['precision']}   on: {where}   {r['seconds']:.1f} s")
    if r.get("note"):
        print(f"NOTE: {r['note']}")
    rows = [(k, f"{v['accuracy']:.1%}", f"[{v['ci95'][0]:.1%}, {v['ci95'][1]:.1%}]", v["n"])
            for k, v in list(r["by_difficulty"].items()) + [("overall", r["overall"])]]
    print(table(rows, ("difficulty", "accuracy", "95% Wilson CI", "n")))


def show_curriculum(r: dict) -> None:
    print(f"curriculum {r['stage_steps']}   {r['seconds']:.0f} s   run: {r['run_dir']}")
    for st in r["studies"]:
        rows = []
        for h in st["history"]:
            cells = [f"{v['accuracy']:.1%} [{v['ci95'][0]:.1%}, {v['ci95'][1]:.1%}]"
                     for v in h["by_difficulty"].values()]
            rows.append(("start" if h["stage"] == "start" else f"after {h['stage']}", *cells))
        levels = list(st["history"][0]["by_difficulty"])
        fisher = f", {st.get('fisher', 'gold')} Fisher" if st["lambda"] > 0 else ""
        print(f"\nlambda = {st['lambda']:g}{fisher}   on {st['history'][0].get('split', 'test')}   (Fisher/anchor "
              f"memory: {max((s['ewc_bytes'] for s in st['stages']), default=0) / 2**20:.1f} MiB, "
              f"{st['fisher_dtype']})")
        print(table(rows, ("", *levels)))
    summary = r.get("summary") or {}
    for split, arms in summary.get("splits", {}).items():
        rows = [(f"{a['lambda']:g}" + (f" {a['fisher']}" if a["lambda"] > 0 else ""), f"{a['after_first']:.1%}",
                 f"{a['final']:.1%}", f"{a['forgetting']:+.1%} [{a['forgetting_ci95'][0]:+.1%}, "
                 f"{a['forgetting_ci95'][1]:+.1%}]",
                 f"{a['vs_no_ewc']:+.1%} [{a['vs_no_ewc_ci95'][0]:+.1%}, {a['vs_no_ewc_ci95'][1]:+.1%}]"
                 if "vs_no_ewc" in a else "-",
                 f"{a['recovered_fraction']:.0%}" if a.get("recovered_fraction") is not None else "-")
                for a in arms]
        print(f"\n{summary['first_stage']} items on {split} (n = {arms[0]['n']}): forgetting = after its stage - at "
              f"the end; EWC - no EWC at the end, paired")
        print(table(rows, ("lambda", "after its stage", "at the end", "forgetting", "EWC - no EWC", "recovered")))
    if r.get("recorded_in"):
        print(f"\nrows: {r['recorded_in']}")


def show_detect(d: dict) -> None:
    t = d.get("torch", {})
    rows = [("machine id", d["machine_id"]), ("model", d["model_name"]),
            ("vendor / microarch", f"{d['vendor']} / {d['microarch']} (family {d['family']}, model {d['model']}, "
                                   f"stepping {d['stepping']})"),
            ("ISA class", d["isa_class"]), ("features", " ".join(d["features"]) or "-"),
            ("cores", f"{d['physical_cores']} physical, {d['logical_cpus']} logical, {d['threads_per_core']} "
                      f"thread(s)/core, {d['sockets']} socket(s)"),
            ("usable CPUs", f"{d['n_usable']} {d['usable_cpus']}  cgroup quota: {d['cgroup_cpu_quota'] or 'none'}"),
            ("NUMA", ", ".join(f"node{k}: {v}" for k, v in d["numa_nodes"].items()) or "-"),
            ("caches", f"L1d {d['l1d_kb']} KiB, L2 {d['l2_kb']} KiB, L3 {d['l3_kb']} KiB"),
            ("RAM", f"{d['ram_total_gb']} GiB total, {d['ram_available_gb']} GiB available, cgroup limit "
                    f"{d['cgroup_memory_limit_gb'] or 'none'}"),
            ("hypervisor / governor", f"{d['hypervisor'] or 'none'} / {d['governor'] or 'unreadable'}"),
            ("torch", f"{t.get('version')} capability {t.get('cpu_capability')}, MKL {t.get('mkl')}, oneDNN "
                      f"{t.get('onednn')}, {t.get('openmp')}"),
            ("env", " ".join(f"{k}={v}" for k, v in d["env"].items()) or "-"),
            ("emulated", json.dumps(d["emulated"]) if d["emulated"] else "no")]
    print(table(rows))
    if d.get("saved"):
        print(f"saved {d['saved']}; asv machine '{d['asv_machine']}' recorded")


def show_probe(d: dict) -> None:
    print(f"machine {d['machine_id']}   GEMM n={d['n']}, {d['repeats']} repeats   oneDNN bf16 kernel: "
          f"{d['effective']['bf16_matmul']}")
    rows = []
    for r in d["results"]:
        if "unsupported" in r:
            rows.append((r["probe"], r["threads"], "unsupported", "", r["unsupported"][:60]))
            continue
        s, unit = (r["gflops"], "GFLOP/s") if "gflops" in r else (r["gbps"], "GB/s")
        rows.append((r["probe"], r["threads"], f"{s['median']:.1f} {unit}", f"{s['min']:.1f} .. {s['max']:.1f}",
                     f"{s['rel_spread']:.1%}"))
    print(table(rows, ("probe", "threads", "median", "min .. max", "spread")))
    print(f"saved {d['saved']}")


def show_rollout_bench(r: dict) -> None:
    print(f"model: {r['model']}   threads: {r['threads']}   batch {r['batch_size']} x {r['new_tokens']} new tokens, "
          f"{r['repeats']} interleaved repeats")
    rows = [(p, f"{a['decode_s']['median']:.3f}", f"{a['decode_s']['min']:.3f} .. {a['decode_s']['max']:.3f}",
             f"{a['tokens_per_s']:.0f}", f"{a['refresh_s']:.3f}", f"{a.get('speedup_vs_fp32', float('nan')):.2f}x")
            for p, a in r["arms"].items()]
    print(table(rows, ("rollout precision", "decode s (median)", "min .. max", "tokens/s", "refresh s",
                        "vs fp32")))


def _trial_line(r: dict) -> tuple:
    c = r["config"]
    p = c.get("processes") or 1
    from ..runs.analysis import threads_per_process

    t = threads_per_process(r) or "?"
    layout = f"{p}x{t}" if p > 1 else f"{t}t"  # threads left to the default: what took effect
    knobs = (f"{layout} b{c['batch_size']} upd={c['update_precision']} roll={c['rollout_precision']}"
             f"{' gc' if c['gradient_checkpointing'] else ''}")
    if r["status"] != "ok":
        return (r["trial_id"], c["model"], knobs, r["status"], "-", "-", (r.get("reason") or "")[:60])
    s = r["summary"]
    sps = s["samples_per_s"]
    note = "noisy (re-measured)" if r.get("noisy") else ""
    if r.get("accuracy"):
        note = f"acc {r['accuracy']['overall']['accuracy']:.1%}"
    return (r["trial_id"], c["model"], knobs, "ok", f"{sps['median']:.2f} ({sps['min']:.2f}..{sps['max']:.2f})",
            f"{r['outside']['os_peak_rss_mb']:.0f}", note)


def show_sweep(r: dict) -> None:
    print(f"machine {r['machine_id']}: {len(r['trials'])} trials run of {r['grid_points']} grid points "
          f"-> {r['store']}")
    if r["trials"]:
        print(table([_trial_line(t) for t in r["trials"]],
                    ("trial", "model", "settings", "status", "samples/s median (min..max)", "peak RSS MiB", "note")))
    for s in r["skipped"]:
        print(f"skipped {s['point']}: {s['reason']}")


def show_gate(r: dict) -> None:
    key = " / ".join(r["key"])
    print(f"quality gate for {key} on {r['machine_id']}: {r['text']}")
    print(f"trials: reference {r['reference_trial']}" + (f", candidate {r['trial_id']}" if r.get("trial_id") else ""))


def show_tune(r: dict) -> None:
    ev = r["evidence"]
    print(f"recommended for {ev['machine_id']} ({ev['mode']} tune, {r['seconds']:.0f} s, "
          f"{ev['speed_trials']} speed trials, {len(ev['gate_trials'])} gate trials):")
    print(table([(k, v) for k, v in r["train"].items()], ("setting", "value")))
    print(f"measured: {ev['samples_per_s']:.1f} samples/s (range {ev['samples_per_s_range'][0]:.1f}.."
          f"{ev['samples_per_s_range'][1]:.1f}), {ev['tokens_per_s']:.0f} completion tokens/s, peak RSS "
          f"{ev['peak_rss_mb']:.0f} MiB")
    print("why:")
    for k, v in r["reasons"].items():
        print(f"  {k}: {v}")
    print("Pareto front (throughput vs peak RSS):")
    for line in ev["pareto_front"]:
        print(f"  {line}")
    g = r.get("grid_check")
    if g:
        print(f"grid check: tuner's pick {g['pick_in_grid']:.1f} samples/s = {g['pick_vs_best']:.1%} of the full "
              f"grid's best {g['grid_best']:.1f} ({g['grid_points']} points); search trial time "
              f"{g['search_trial_seconds']:.0f} s = {g['time_fraction']:.1%} of the grid's "
              f"{g['grid_trial_seconds']:.0f} s")
    for k, v in r["paths"].items():
        print(f"{k}: {v}")


def show_baseline(r: dict) -> None:
    from ..runs.baseline import SHOWN, cpugrpo_settings, ratio_text, trl_settings

    c = r["config"]
    print(f"model {c['model']}, {c['batch_size']} completions per step, {c['max_completion_length']} max new tokens, "
          f"{r['pairs']} pairs in rotating order")

    def row(label, s, settings):
        o, i = s["samples_per_s"], s["samples_per_s_inside"]
        tok = s.get("mean_completion_tokens")
        return (label, f"{o['median']:.2f}" if o["n"] else "failed",
                f"{o['min']:.2f} .. {o['max']:.2f}" if o["n"] else "", f"{i['median']:.2f}" if i["n"] else "",
                f"{s['peak_rss_mb']:.0f}" if s.get("peak_rss_mb") else "", f"{tok:.1f}" if tok else "", settings)

    rows = [row(f"cpugrpo ({r.get('config_file') or 'config'})", r["cpugrpo"], cpugrpo_settings(c))]
    rows += [row(f"{r['peers'][p]['label']} ({p})", r["peers"][p], trl_settings(r["peers"][p].get("trl_args")))
             for p in SHOWN]
    print(table(rows, ("side", "samples/s (outside clock)", "min .. max", "inside clock", "peak RSS MiB",
                       "tokens/completion", "settings that ran")))
    for p in SHOWN:
        print(f"cpugrpo / {r['peers'][p]['label']}: {ratio_text(r['peers'][p])} "
              f"(per pair: {', '.join(f'{x:.2f}' for x in r['peers'][p]['ratios'])})")
    for f in r["failures"]:
        print(f"failed trial: {f}")


def show_report(r: dict) -> None:
    print(f"report for {r['machine_id']}: {r['report']}")
    for w in r.get("warnings", []):  # unreadable (torn) result lines: the report leaves their rows out
        print(w, file=sys.stderr)


def show_compare(r: dict) -> None:
    print(f"comparison ({r['configurations']} configurations measured on the reference and another machine, reference "
          f"{r['reference']}): {r['report']}")
    if r["table"]:
        cols = list(r["table"][0])
        print(table([tuple(f"{v:.2f}" if isinstance(v, float) else v for v in row.values()) for row in r["table"]],
                    tuple(c[:28] for c in cols)))
