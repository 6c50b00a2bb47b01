#!/usr/bin/env python3
"""The Python a user would write for localization scoring: torch's interpolate, then numpy.
Reads what medvlp_localization_bench --write DIR wrote; prints one JSON line."""
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
d = sys.argv[1]
boxes = json.load(open(d + "/boxes.json"))
images, findings, grid, size = len(boxes) // 14, 14, 14, 512
maps = torch.from_numpy(np.fromfile(d + "/maps.f32", dtype=np.float32).reshape(images, findings, grid, grid))
thresholds = np.array([0.1, 0.2, 0.3, 0.4, 0.5], dtype=np.float32)
miou = pointing = cnr = 0.0
seconds = 0.0
for i in range(images):
    start = time.perf_counter()
    up = F.interpolate(maps[i:i + 1], size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    lo = up.reshape(findings, -1).min(1)[:, None, None]
    hi = up.reshape(findings, -1).max(1)[:, None, None]
    norm = np.where(hi > lo, (up - lo) / np.maximum(hi - lo, 1e-30), 0)
    results = []
    for k in range(findings):
        x0, y0, x1, y1 = boxes[i * findings + k]
        target = np.zeros((size, size), bool)
        target[y0:y1, x0:x1] = True
        m = norm[k]
        peak = m == m.max()
        pt = (peak & target).sum() / peak.sum()
        pred = m[None] >= thresholds[:, None, None]
        inter = (pred & target).sum((1, 2))
        union = pred.sum((1, 2)) + target.sum() - inter
        inside, outside = m[target], m[~target]
        noise = np.sqrt(inside.var() + outside.var())
        c = abs(inside.mean() - outside.mean()) / noise if noise > 0 else 0.0
        results.append(((inter / union).mean(), pt, c))
    seconds += time.perf_counter() - start
    for a, b, c in results:
        miou += a
        pointing += b
        cnr += c
n = images * findings
print(json.dumps({"images": images, "ms_per_image": 1000 * seconds / images, "miou": miou / n, "pointing": pointing / n,
                  "cnr": cnr / n}))
