"""Offer policies compared on the same simulated fortnights: reference, seed, godminer and the oracle.

Every policy faces the same 20 seeded fortnights (seeds 0..19: same tasks, same competitors' habits and draws)
through `godminer.scoring.simulator.simulate`. Prints a table (emission share: mean, std, min, max; mean wins,
failures, accepted offers, GPU utilisation; runs that end cut off from offers; seconds per run) and the ratios
godminer / seed and godminer / oracle; writes the table as markdown to docs/policies.md and the mean daily
emission share per policy to docs/policies.png.
If the godminer policy cannot be loaded yet, the others still run (with a note).

Usage: python bench/policies.py [--seeds 20] [--days 14] [--workers 2] [--out docs] [--params sim.json] [--skill 2.0]
(--params: a `SimParams` JSON file; --skill: our skill in every kind, over the params).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from godminer.engine.policy import get_policy
from godminer.scoring.simulator import SimParams, simulate

POLICIES = ("reference", "seed", "godminer", "oracle")


def available(policies):
    """The policies that load, and a note for each that does not."""
    ok, notes = [], []
    for name in policies:
        try:
            if name != "oracle":
                get_policy(name)
            ok.append(name)
        except (ValueError, ImportError) as e:
            notes.append(f"policy {name!r} is not available yet ({e}); skipped")
    return ok, notes


def one_run(job):
    policy, seed, days, params = job
    started = time.perf_counter()
    result = simulate(days=days, seed=seed, policy=policy, params=params).to_dict()
    result["seconds"] = time.perf_counter() - started
    return result


def summary(runs):
    shares = [r["emission_share"] for r in runs]
    kept = [r["emission_share"] for r in runs if r["cut_off_day"] is None]
    return {
        "mean": statistics.mean(shares), "std": statistics.pstdev(shares), "min": min(shares), "max": max(shares),
        **{k: statistics.mean(r[k] for r in runs) for k in ("wins", "failures", "accepted", "gpu_utilisation",
                                                            "seconds")},
        "cut_off": len(runs) - len(kept),
        "kept_mean": statistics.mean(kept) if kept else 0.0,
    }


def table(rows):
    head = ("| policy | emission share mean | std | min | max | wins | failures | accepted | GPU util. | cut off | "
            "share when not cut off | s/run |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [
        f"| {name} | {s['mean']:.4f} | {s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} | {s['wins']:.1f} | "
        f"{s['failures']:.1f} | {s['accepted']:.1f} | {s['gpu_utilisation']:.2f} | {s['cut_off']} | "
        f"{s['kept_mean']:.4f} | {s['seconds']:.1f} |"
        for name, s in rows.items()
    ]
    return head + "\n".join(lines) + "\n"


def ratios(rows, by_policy):
    """godminer's mean emission share over seed's and over the oracle's; and over the oracle's on the seeds where
    godminer kept its offers (the cut-off is a draw of the first scored tasks, which only the oracle foresees)."""
    lines = [
        f"godminer / {other}: {rows['godminer']['mean'] / rows[other]['mean']:.3f} (ratio of mean emission shares)"
        for other in ("seed", "oracle")
        if "godminer" in rows and other in rows and rows[other]["mean"] > 0
    ]
    if "godminer" in by_policy and "oracle" in by_policy:
        kept = {r["seed"] for r in by_policy["godminer"] if r["cut_off_day"] is None}
        ours = [r["emission_share"] for r in by_policy["godminer"] if r["seed"] in kept]
        best = [r["emission_share"] for r in by_policy["oracle"] if r["seed"] in kept]
        if kept and sum(best) > 0:
            lines.append(f"godminer / oracle on the {len(kept)} seeds where godminer was not cut off: "
                         f"{sum(ours) / sum(best):.3f}")
    return lines


def plot(by_policy, days, path):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, runs in by_policy.items():
        series = [[d["emission_share"] for d in r["daily"]] for r in runs]
        mean = [statistics.mean(day) for day in zip(*series, strict=True)]
        low = [min(day) for day in zip(*series, strict=True)]
        high = [max(day) for day in zip(*series, strict=True)]
        x = list(range(1, len(mean) + 1))
        ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, low, high, alpha=0.12)
    ax.set_xlabel("day")
    ax.set_ylabel("our share of the subnet's emission (day mean)")
    ax.set_title(f"Emission share per day, mean and range over {len(next(iter(by_policy.values())))} seeds")
    ax.set_xlim(1, days)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--params", type=Path, help="SimParams JSON (default: the built-in guesses)")
    parser.add_argument("--skill", type=float, help="our skill in every kind (overrides --params)")
    args = parser.parse_args()
    params = SimParams.load(args.params) if args.params else SimParams()
    if args.skill is not None:
        params = replace(params, our_skill=dict.fromkeys(params.our_skill, args.skill))

    policies, notes = available(POLICIES)
    for note in notes:
        print(note)
    jobs = [(policy, seed, args.days, params) for policy in policies for seed in range(args.seeds)]
    started = time.perf_counter()
    with Pool(args.workers) as pool:
        results = pool.map(one_run, jobs)
    wall = time.perf_counter() - started
    by_policy = {p: [r for r in results if r["policy"] == p] for p in policies}
    rows = {p: summary(runs) for p, runs in by_policy.items()}

    text = table(rows)
    ratio_lines = ratios(rows, by_policy)
    print(text)
    for line in ratio_lines:
        print(line)
    print(f"{len(jobs)} runs in {wall:.0f} s with {args.workers} workers")

    args.out.mkdir(parents=True, exist_ok=True)
    plot(by_policy, args.days, args.out / "policies.png")
    measured = "from day 7" if args.days >= 10 else "over the whole run"
    (args.out / "policies.md").write_text(
        "# Offer policies on simulated fortnights\n\n"
        f"`python bench/policies.py --seeds {args.seeds} --days {args.days:g}`: each policy on the same "
        f"{args.seeds} seeded {args.days:g}-day runs of `godminer.scoring.simulator` (era 2025-07-21, tournament "
        f"difference 0, 4 × H100 80 GB, our skill {sorted(set(params.our_skill.values()))} in `SimParams`, the "
        "market warmed up 14 days before our new hotkey joins). Emission share = our share of the subnet's whole "
        f"emission, mean of two-hourly values {measured}; wins, failures and accepted offers are per run; GPU "
        "utilisation is reserved GPU-time over the measured period; 'cut off' counts the runs that end without offers "
        "(a scored miner with no win on a task of the last 7 days gets none; a new hotkey whose first scored task is "
        "not a win is cut off at once unless a pending task wins); s/run is wall time per run with "
        f"{args.workers} runs in parallel.\n\n"
        + text + "\n" + "".join(f"- {line}\n" for line in ratio_lines + notes)
        + "\n![emission share per day](policies.png)\n"
    )
    print(f"wrote {args.out / 'policies.md'} and {args.out / 'policies.png'}")


if __name__ == "__main__":
    main()
