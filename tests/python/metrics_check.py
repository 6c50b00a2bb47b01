#!/usr/bin/env python3
"""`medvlp metrics` agrees with scikit-learn and with an independent numpy bootstrap.

Predictions with tied scores, uncertain (-1) labels, cases left out of a finding (empty cells),
patients with several images and a finding without positives are written as CSV; medvlp's AUROC,
AUPRC, F1-maximizing validation thresholds, accuracy and F1 (per finding, macro, micro) must equal
sklearn's on the same inputs, and its patient-level percentile bootstrap intervals must agree with a
numpy bootstrap (other random draws: equal within Monte Carlo error). A second set without -1 labels
is compared against sklearn's own multilabel macro/micro averaging. Bad cells are reported by file,
line and column.

Usage: metrics_check.py MEDVLP_BINARY WORK_DIR. Without sklearn: skipped, or failed under CI=true.
"""
import csv
import json
import math
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import numpy as np
    from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, precision_recall_curve,
                                 roc_auc_score)
except ImportError:
    unavailable("python3 has no sklearn (Debian: python3-sklearn)")

FINDINGS = ["effusion", "nodule, small", "cardiomegaly", "never seen"]


def make(rng, n_patients, uncertain):
    """Rows of (id, patient, scores[K], labels[K]); NaN score+label = left out."""
    rows = []
    for p in range(n_patients):
        for j in range(rng.integers(1, 4)):  # 1-3 images per patient
            labels, scores = [], []
            for k, f in enumerate(FINDINGS):
                y = 0.0 if f == "never seen" else float(rng.random() < (0.15 + 0.1 * k))
                # Rounded scores: many ties, which every metric must handle as sklearn does.
                s = round(float(rng.normal(1.2 * y, 1.0)), 1)
                if uncertain and rng.random() < 0.08:
                    y = -1.0
                if uncertain and k == 2 and rng.random() < 0.1:
                    s = y = math.nan
                scores.append(s)
                labels.append(y)
            rows.append((f"img{p}_{j}", f"pat{p}", scores, labels))
    return rows


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "patient_id"] + ["score:" + x for x in FINDINGS] + ["label:" + x for x in FINDINGS])
        for i, p, s, y in rows:
            w.writerow([i, p] + ["" if math.isnan(v) else repr(v) for v in s] +
                       ["" if math.isnan(v) else str(int(v)) for v in y])


def columns(rows, k):
    s = np.array([r[2][k] for r in rows])
    y = np.array([r[3][k] for r in rows])
    keep = (y == 0) | (y == 1)
    return s, y, keep


def run(binary, args):
    out = subprocess.run([binary, "--log-level", "warn", "metrics"] + args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def close(a, b, tol, what):
    assert abs(a - b) <= tol, f"{what}: medvlp {a} vs reference {b}"


def best_f1_threshold(s, y):
    # sklearn's precision-recall curve over the validation scores; the F1-maximizing threshold
    # (the highest on ties, as medvlp documents).
    p, r, t = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)[:-1]
    best = f1.max()
    return t[np.flatnonzero(np.isclose(f1, best, rtol=0, atol=1e-12))].max(), best


def check_point_estimates(result, test, val):
    means = {"auroc": [], "auprc": [], "accuracy": [], "f1": []}
    pooled_true, pooled_pred = [], []
    for k, f in enumerate(FINDINGS):
        got = result["findings"][f]
        s, y, keep = columns(test, k)
        vs, vy, vkeep = columns(val, k)
        assert got["positives"] == int((y[keep] == 1).sum()) and got["negatives"] == int((y[keep] == 0).sum()), f
        if f == "never seen":
            assert got["auroc"] is None and got["auprc"] is None and got["auroc_ci"] is None, got
            assert got["threshold"] is None and got["f1"] is None, got
            continue
        auroc = roc_auc_score(y[keep], s[keep])
        auprc = average_precision_score(y[keep], s[keep])
        close(got["auroc"], auroc, 1e-12, f + " AUROC")
        close(got["auprc"], auprc, 1e-12, f + " AUPRC")
        t, best = best_f1_threshold(vs[vkeep], vy[vkeep])
        close(got["threshold"], t, 1e-12, f + " threshold")
        pred = (s[keep] >= got["threshold"]).astype(int)
        close(got["accuracy"], accuracy_score(y[keep], pred), 1e-12, f + " accuracy")
        close(got["f1"], f1_score(y[keep], pred, zero_division=0), 1e-12, f + " F1")
        for key, v in (("auroc", auroc), ("auprc", auprc), ("accuracy", got["accuracy"]), ("f1", got["f1"])):
            means[key].append(v)
        pooled_true += list(y[keep])
        pooled_pred += list(pred)
    m = result["mean"]
    assert m["findings"] == FINDINGS[:3], m["findings"]
    close(m["auroc"], np.mean(means["auroc"]), 1e-12, "mean AUROC")
    close(m["auprc"], np.mean(means["auprc"]), 1e-12, "mean AUPRC")
    close(m["accuracy"], np.mean(means["accuracy"]), 1e-12, "mean accuracy")
    close(m["f1_macro"], np.mean(means["f1"]), 1e-12, "macro F1")
    # Micro F1 pools the counts of every (case, finding) pair: the binary F1 of the concatenation.
    close(m["f1_micro"], f1_score(pooled_true, pooled_pred), 1e-12, "micro F1")


def numpy_bootstrap(test, resamples, seed, level):
    rng = np.random.default_rng(seed)
    patients = sorted({r[1] for r in test})
    members = {p: [i for i, r in enumerate(test) if r[1] == p] for p in patients}
    per_finding = {f: [] for f in FINDINGS[:3]}
    mean = []
    for _ in range(resamples):
        w = np.zeros(len(test))
        for p in rng.choice(patients, size=len(patients), replace=True):
            w[members[p]] += 1
        aucs = []
        for k, f in enumerate(FINDINGS[:3]):
            s, y, keep = columns(test, k)
            ok = keep & (w > 0)
            if len(set(y[ok])) < 2:
                aucs.append(math.nan)
            else:
                aucs.append(roc_auc_score(y[ok], s[ok], sample_weight=w[ok]))
            per_finding[f].append(aucs[-1])
        mean.append(np.mean(aucs))
    a = (1 - level) / 2
    ci = lambda v: np.percentile([x for x in v if not math.isnan(x)], [100 * a, 100 * (1 - a)])  # noqa: E731
    return {f: ci(v) for f, v in per_finding.items()}, ci(mean)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(20261127)
    test, val = make(rng, 150, True), make(rng, 80, True)
    write(os.path.join(work, "test.csv"), test)
    write(os.path.join(work, "val.csv"), val)
    result = run(binary, [os.path.join(work, "test.csv"), "--thresholds-from", os.path.join(work, "val.csv"),
                          "--bootstrap", "2000", "--seed", "5", "-o", os.path.join(work, "out.json")])
    with open(os.path.join(work, "out.json")) as f:
        assert json.load(f) == result
    check_point_estimates(result, test, val)
    assert result["bootstrap"]["patients"] == 150 and result["bootstrap"]["resamples"] == 2000, result["bootstrap"]

    # The bootstrap intervals against numpy's: different draws, so equal within Monte Carlo error
    # (the 2.5 % quantile of 2000 resamples moves by ~0.005 AUROC here).
    ref_findings, ref_mean = numpy_bootstrap(test, 2000, 11, 0.95)
    for f, (lo, hi) in ref_findings.items():
        got = result["findings"][f]["auroc_ci"]
        close(got[0], lo, 0.02, f + " AUROC CI low")
        close(got[1], hi, 0.02, f + " AUROC CI high")
        assert got[0] < result["findings"][f]["auroc"] < got[1], (f, got)
    close(result["mean"]["auroc_ci"][0], ref_mean[0], 0.015, "mean AUROC CI low")
    close(result["mean"]["auroc_ci"][1], ref_mean[1], 0.015, "mean AUROC CI high")
    # Another seed draws other resamples; the same seed the same ones.
    again = run(binary, [os.path.join(work, "test.csv"), "--bootstrap", "2000", "--seed", "5"])
    assert again["mean"]["auroc_ci"] == result["mean"]["auroc_ci"]
    other = run(binary, [os.path.join(work, "test.csv"), "--bootstrap", "2000", "--seed", "6"])
    assert other["mean"]["auroc_ci"] != result["mean"]["auroc_ci"]
    assert "f1_macro" not in again["mean"], "no thresholds were given, so no F1"

    # Without uncertain labels sklearn's multilabel averaging applies directly.
    clean, clean_val = make(rng, 60, False), make(rng, 40, False)
    write(os.path.join(work, "clean.csv"), clean)
    write(os.path.join(work, "clean_val.csv"), clean_val)
    r = run(binary, [os.path.join(work, "clean.csv"), "--thresholds-from", os.path.join(work, "clean_val.csv"),
                     "--bootstrap", "0"])
    y = np.array([row[3][:3] for row in clean])
    s = np.array([row[2][:3] for row in clean])
    t = np.array([r["findings"][f]["threshold"] for f in FINDINGS[:3]])
    pred = (s >= t).astype(int)
    close(r["mean"]["f1_macro"], f1_score(y, pred, average="macro", zero_division=0), 1e-12, "sklearn macro F1")
    close(r["mean"]["f1_micro"], f1_score(y, pred, average="micro", zero_division=0), 1e-12, "sklearn micro F1")
    close(r["mean"]["auroc"], roc_auc_score(y, s, average="macro"), 1e-12, "sklearn macro AUROC")
    close(r["mean"]["auprc"], average_precision_score(y, s, average="macro"), 1e-12, "sklearn macro AUPRC")
    assert r["mean"]["auroc_ci"] is None, "no resamples, no interval"

    # Bad input names the file, the line and the column.
    bad = os.path.join(work, "bad.csv")
    with open(bad, "w") as f:
        f.write("id,patient_id,score:a,label:a\nx,p,0.5,1\ny,q,0.7,2\n")
    out = subprocess.run([binary, "metrics", bad], capture_output=True, text=True)
    assert out.returncode == 1 and f"{bad}:3: column \"label:a\": a label is 1, 0, -1 or empty, got \"2\"" in out.stderr, out.stderr
    print("medvlp metrics agrees with sklearn (AUROC, AUPRC, thresholds, accuracy, F1 macro/micro) and numpy's bootstrap")


if __name__ == "__main__":
    main()
