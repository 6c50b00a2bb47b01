"""The same CT preprocessing as bench/volume_bench.cpp with the Python tools a user would pick:
nibabel (load, as_closest_canonical, get_fdata as float32, which applies scl_slope/inter) and torch
(F.interpolate trilinear to the 1.5 mm grid, clamp to the window), on one core.
Usage: volume_bench.py DIR [REPEATS]. Prints one JSON line."""
import glob
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import nibabel as nib  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)


def profiles(out):
    """bench/volume_bench.cpp's marginal profiles along z, y, x of nibabel's [x, y, z] output."""
    v = out.permute(2, 1, 0).double()
    return [v.sum((1, 2)).tolist(), v.sum((0, 2)).tolist(), v.sum((0, 1)).tolist()]

d = sys.argv[1]
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
paths = sorted(glob.glob(os.path.join(d, "*.nii.gz")))
best, checksum, voxels = float("inf"), 0.0, 0
profile_list = []
for _ in range(repeats):
    t0 = time.perf_counter()
    checksum, voxels = 0.0, 0
    untimed = 0.0
    for p in paths:
        img = nib.as_closest_canonical(nib.load(p))
        data = torch.from_numpy(img.get_fdata(dtype="float32"))
        spacing = img.header.get_zooms()[:3]
        size = [max(1, round(n * s / 1.5)) for n, s in zip(data.shape, spacing)]
        out = F.interpolate(data[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]
        out = ((out + 1000.0) / 1400.0).clamp_(0.0, 1.0)
        checksum += float(out.sum())
        if len(profile_list) < len(paths):  # not timed: the profiles are the check, not the work
            tp = time.perf_counter()
            profile_list.append(profiles(out))
            untimed += time.perf_counter() - tp
        voxels += out.numel()
    best = min(best, time.perf_counter() - t0 - untimed)
print(json.dumps({"what": "volume_python", "dir": d, "files": len(paths), "seconds": best, "voxels_out": voxels,
                  "files_per_s": len(paths) / best, "checksum": checksum,
                  "profiles": profile_list}))
