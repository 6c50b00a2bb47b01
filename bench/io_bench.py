"""The same DICOM preprocessing as bench/io_bench.cpp with the Python tools a user would pick:
pydicom (pixel_array + apply_modality_lut; GDCM decodes JPEG) and OpenCV-python INTER_AREA resize,
on one core. Usage: io_bench.py DIR [REPEATS]. Prints one JSON line."""
import glob
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.pixel_data_handlers.util import apply_modality_lut  # noqa: E402

cv2.setNumThreads(1)
d = sys.argv[1]
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
paths = sorted(glob.glob(os.path.join(d, "*.dcm")))
best, checksum = float("inf"), 0.0
for _ in range(repeats):
    seconds, checksum = 0.0, 0.0  # decode + resize only: the checksum is not timed
    for p in paths:
        t0 = time.perf_counter()
        ds = pydicom.dcmread(p)
        arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        out = cv2.resize(arr, (512, 512), interpolation=cv2.INTER_AREA)
        seconds += time.perf_counter() - t0
        # bench/io_bench.cpp's positional checksum: rows weighted 1..2, columns 1..4.
        w = np.outer(1.0 + np.arange(out.shape[0]) / max(out.shape[0] - 1, 1),
                     1.0 + 3.0 * np.arange(out.shape[1]) / max(out.shape[1] - 1, 1))
        checksum += float((out.astype(np.float64) * w).sum())
    best = min(best, seconds)
print(json.dumps({"what": "dicom_python", "dir": d, "files": len(paths), "seconds": best,
                  "files_per_s": len(paths) / best, "checksum": checksum}))
