"""Asserts that two medvlp checkpoints hold the same weights to a tolerance.

    same_weights.py A/model.safetensors B/model.safetensors [TOLERANCE]
"""
import sys

import st_io


def main():
    a, b = st_io.load(sys.argv[1]), st_io.load(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    if a.keys() != b.keys():
        sys.exit(f"FAIL: different tensors: {sorted(a.keys() ^ b.keys())}")
    worst, where = 0.0, ""
    for name in sorted(a):
        x, y = a[name].double(), b[name].double()
        if x.shape != y.shape:
            sys.exit(f"FAIL: {name}: shapes {list(x.shape)} and {list(y.shape)}")
        d = (x - y).abs().max().item() if x.numel() else 0.0
        if d > worst:
            worst, where = d, name
    print(f"largest difference {worst:.3e} ({where}), tolerance {tol:g}")
    if worst > tol:
        sys.exit(f"FAIL: {where} differs by {worst:.3e} > {tol:g}")


if __name__ == "__main__":
    main()
