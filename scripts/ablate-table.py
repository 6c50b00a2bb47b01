#!/usr/bin/python3
"""Markdown table of one ablation claim from its runs' eval.json (and probe) files: mean ± sd over
seeds with the per-seed values, per arm. Called by scripts/ablate; standard library only."""
import argparse
import json
import math
import os
import platform
import statistics


def dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) and not math.isnan(d) else None


def summary(values, digits=3):
    """'m ± sd (v1, v2, v3)'; a missing seed shows as '–' and is left out of mean and sd."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    f = f"{{:.{digits}f}}"
    head = f.format(statistics.mean(present))
    if len(present) > 1:
        head += " ± " + f.format(statistics.stdev(present))
    return head + " (" + ", ".join("–" if v is None else f.format(v) for v in values) + ")"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--claim", required=True)
    p.add_argument("--arms", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", required=True)
    p.add_argument("--commit", default="unknown")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    arms = []
    with open(a.arms) as f:
        for line in f:
            if line.strip():
                ident, config, sets, what = line.rstrip("\n").split("|", 3)
                arms.append((ident, config, sets, what))

    def load(ident, seed, name):
        path = os.path.join(a.out, ident, f"seed{seed}", name)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def seconds(ident, seed):
        try:
            with open(os.path.join(a.out, ident, f"seed{seed}.seconds")) as f:
                return float(f.read())
        except (OSError, ValueError):
            return None

    evals = {(i, s): load(i, s, "eval.json") for i, _, _, _ in arms for s in seeds}
    probes = {(i, s): load(i, s, "probe_0.01.json") for i, _, _, _ in arms for s in seeds}
    columns = [("mean AUROC", lambda e, p: dig(e, "zero_shot", "mean", "auroc")),
               ("mean AUPRC", lambda e, p: dig(e, "zero_shot", "mean", "auprc")),
               ("image→report R@10", lambda e, p: dig(e, "retrieval", "image_to_text", "R@10"))]
    if any(dig(e, "localization", "mean", "pointing_game") is not None for e in evals.values()):
        columns += [("pointing game", lambda e, p: dig(e, "localization", "mean", "pointing_game")),
                    ("mIoU", lambda e, p: dig(e, "localization", "mean", "miou")),
                    ("CNR", lambda e, p: dig(e, "localization", "mean", "cnr"))]
    if any(v is not None for v in probes.values()):
        columns.append(("linear probe 1 % AUROC", lambda e, p: dig(p, "mean", "auroc")))

    print(f"### {a.claim}\n")
    print(f"Seeds {a.seeds}; medvlp {a.commit}; {os.cpu_count()} × {cpu_name()}. Each cell: mean ± sd over "
          "the seeds, then the per-seed values; the zero-shot figures are on the phantoms' test split.\n")
    print("| arm | " + " | ".join(c for c, _ in columns) + " | train s |")
    print("|---" * (len(columns) + 2) + "|")
    for ident, _, _, what in arms:
        cells = [summary([get(evals[(ident, s)], probes[(ident, s)]) for s in seeds]) for _, get in columns]
        cells.append(summary([seconds(ident, s) for s in seeds], 0))
        print(f"| {what} | " + " | ".join(cells) + " |")

    findings = []
    for e in evals.values():
        for name in ((e or {}).get("zero_shot", {}).get("findings") or {}):
            if name not in findings:
                findings.append(name)
    if findings:
        print("\nAUROC per finding (mean ± sd over the seeds):\n")
        print("| finding | " + " | ".join(ident for ident, _, _, _ in arms) + " |")
        print("|---" * (len(arms) + 1) + "|")
        for name in findings:
            cells = []
            for ident, _, _, _ in arms:
                vals = [dig(evals[(ident, s)], "zero_shot", "findings", name, "auroc") for s in seeds]
                present = [v for v in vals if v is not None]
                cells.append("–" if not present else f"{statistics.mean(present):.3f}" +
                             (f" ± {statistics.stdev(present):.3f}" if len(present) > 1 else ""))
            print(f"| {name} | " + " | ".join(cells) + " |")

    print("\nArms (config and overrides; every run adds `--set seed=S`):\n")
    for ident, config, sets, what in arms:
        overrides = "".join(f" --set '{s}'" for s in sets.split(";") if s)
        print(f"- `{ident}`: `{config}`{overrides}")


if __name__ == "__main__":
    main()
