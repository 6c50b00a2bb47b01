#!/usr/bin/env bash
# Seeds for nifti_fuzz: small volumes written by nibabel in several dtypes and layouts.
set -u
/usr/bin/python3 - "$1" <<'PY' 2>/dev/null || true
import sys, numpy as np, nibabel as nib
out = sys.argv[1]
aff = np.array([[-1.5, 0, 0, 10], [0, 1.2, 0.1, -20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
for i, (dt, ext, scode, qcode) in enumerate([(np.int16, ".nii", 1, 1), (np.float32, ".nii.gz", 0, 1),
                                              (np.uint8, ".nii", 0, 0), (np.float64, ".nii.gz", 2, 0)]):
    img = nib.Nifti1Image((np.arange(4 * 3 * 2) % 7).reshape(4, 3, 2).astype(dt), aff)
    img.set_sform(aff, code=scode)
    img.set_qform(aff, code=qcode)
    nib.save(img, f"{out}/seed{i}{ext}")
nib.save(nib.Nifti2Image(np.ones((2, 2, 2), np.int32), aff), f"{out}/seed_nifti2.nii")
PY
exit 0
