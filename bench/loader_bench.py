"""The loader pipeline of bench/loader_bench.cpp with torch's DataLoader: cv2.imread of the same PNG
files, torchvision RandomResizedCrop(224, scale=(0.7, 1)), RandomAffine(5, translate=0.03),
ColorJitter(0.1, 0.1), batches of 32, with 1 and 2 worker processes (no tokenization: medvlp's
figure includes it). Usage: loader_bench.py DIR BATCHES. Prints one JSON line per worker count."""
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)
d, batches = sys.argv[1], int(sys.argv[2])
entries = [json.loads(line) for line in open(os.path.join(d, "manifest.jsonl"))]


class Cxr(torch.utils.data.Dataset):
    def __init__(self):
        self.t = T.Compose([T.RandomResizedCrop(224, scale=(0.7, 1.0), antialias=True),
                            T.RandomAffine(5, translate=(0.03, 0.03)), T.ColorJitter(0.1, 0.1)])

    def __len__(self):
        return len(entries)

    def __getitem__(self, i):
        img = cv2.imread(os.path.join(d, entries[i]["image"]), cv2.IMREAD_UNCHANGED)
        x = torch.from_numpy(img).float().div_(255.0)[None]
        return self.t(x), entries[i]["report"]


for workers in (1, 2):
    # Four batches in flight in all, as medvlp's prefetch: 4.
    loader = torch.utils.data.DataLoader(Cxr(), batch_size=32, shuffle=True, num_workers=workers, drop_last=True,
                                         prefetch_factor=4 // workers, persistent_workers=True)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    images = 0
    for _ in range(batches):
        x, _ = next(it)
        images += x.shape[0]
    s = time.perf_counter() - t0
    print(json.dumps({"what": "loader_python", "workers": workers, "images": images, "seconds": s,
                      "images_per_s": images / s}))
