"""CT slice folders assembled by `medvlp inspect DIR --save OUT.nii.gz` against dcm2niix.

The slices are written by pydicom (not by medvlp's writer) with random file names and instance
numbers that do not follow position: axial head-first, oblique, and feet-first series with
non-square pixels and rows != columns. medvlp's volume is compared with dcm2niix's (both loaded by
nibabel and brought to the closest RAS orientation) voxel by voxel and affine by affine, and with
the generator's own volume. A gantry-tilted series is resampled onto an orthogonal grid and compared
with dcm2niix's tilt-corrected file; with --keep-tilt its affine keeps the shear and maps each slice
onto its ImagePositionPatient;
a series with a missing slice or uneven spacing must be reported, naming the folder and positions.

Usage: ct_series_check.py MEDVLP_BINARY WORK_DIR. Without pydicom/nibabel/dcm2niix: skipped, or
failed under CI=true.
"""
import glob
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import numpy as np
    import nibabel as nib
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
except ImportError as e:  # pragma: no cover
    unavailable(f"{e} (Debian: python3-pydicom python3-nibabel)")
if shutil.which("dcm2niix") is None:
    unavailable("dcm2niix not found (Debian: dcm2niix)")

BIN, WORK = sys.argv[1], sys.argv[2]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
failures = []


def write_series(folder, volume, row, col, step, origin, spacing, intercept=-1024.0, positions=None, shuffle=True):
    """volume: [slices, rows, cols] HU. Slice k sits at origin + k*step (or positions[k]), in LPS."""
    os.makedirs(folder)
    rng = random.Random(len(folder))
    series, study = generate_uid(), generate_uid()
    order = list(range(volume.shape[0]))
    if shuffle:
        rng.shuffle(order)  # instance numbers that do not follow position
    for k in range(volume.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = os.path.join(folder, "%08x.dcm" % rng.getrandbits(32))
        ds = FileDataset(name, Dataset(), file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", "oracle", study, series
        ds.SeriesNumber, ds.InstanceNumber = 3, order[k] + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        pos = positions[k] if positions is not None else [origin[i] + k * step[i] for i in range(3)]
        ds.ImagePositionPatient = [float("%.6f" % v) for v in pos]
        ds.ImageOrientationPatient = [float("%.8f" % v) for v in list(row) + list(col)]
        ds.PixelSpacing = [spacing[0], spacing[1]]  # row spacing, column spacing
        ds.SliceThickness = float(np.linalg.norm(step)) if step is not None else 2.5
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1.0, intercept, "HU"
        ds.PixelData = (volume[k] - intercept).astype("<i2").tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(name, write_like_original=False)


def phantom(slices, rows, cols, seed):
    """Asymmetric along every axis, so a flip or transpose cannot pass."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(np.arange(slices), np.arange(rows), np.arange(cols), indexing="ij")
    v = -1000.0 + 900.0 * (((x - cols * 0.3) / cols) ** 2 + ((y - rows * 0.6) / rows) ** 2 < 0.12)
    v += 7.0 * z + 3.0 * x - 2.0 * y + rng.integers(-20, 20, size=v.shape)
    return v.round()


def medvlp_volume(folder, out, *options):
    r = subprocess.run([BIN, "inspect", folder, "--save", out, *options], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return nib.load(out)


def dcm2niix_volume(folder, out_dir):
    os.makedirs(out_dir)
    r = subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "ref", "-o", out_dir, folder], capture_output=True,
                       text=True)
    files = sorted(glob.glob(os.path.join(out_dir, "*.nii")))
    if r.returncode != 0 or len(files) != 1:
        raise RuntimeError(f"dcm2niix gave {files}: {r.stdout[-400:]} {r.stderr[-400:]}")
    return nib.load(files[0])


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def regular_cases():
    """(name, row, col, slice step): each compared with dcm2niix and with the generator's volume."""
    r = rotation(0.35, -0.2, 0.5)
    return [
        ("axial_head_first", (1, 0, 0), (0, 1, 0), (0, 0, 2.5)),
        ("axial_descending", (1, 0, 0), (0, 1, 0), (0, 0, -3.0)),
        ("oblique", tuple(r[:, 0]), tuple(r[:, 1]), tuple(2.0 * np.cross(r[:, 0], r[:, 1]))),
        ("coronal", (1, 0, 0), (0, 0, -1), (0, 1.5, 0)),
    ]


def compare(name, ours, ref, truth=None, truth_affine=None):
    a, b = nib.as_closest_canonical(ours), nib.as_closest_canonical(ref)
    da, db = np.asarray(a.get_fdata()), np.asarray(b.get_fdata())
    if da.shape != db.shape:
        failures.append(f"{name}: shape {da.shape} vs dcm2niix {db.shape}")
        return
    d = np.abs(da - db).max()
    if d > 1e-3:
        failures.append(f"{name}: voxels differ from dcm2niix's by up to {d} HU")
    ad = np.abs(a.affine - b.affine).max()
    if ad > 1e-3:
        failures.append(f"{name}: affine differs from dcm2niix's by {ad} mm:\n{a.affine}\nvs\n{b.affine}")
    msg = f"  {name}: {list(da.shape)} {''.join(nib.aff2axcodes(ours.affine))}, vs dcm2niix: voxels {d:g}, affine {ad:g}"
    if truth is not None:
        # medvlp's [x, y, z] NIfTI against the generator: slices sorted by position along the normal.
        t = np.abs(np.asarray(ours.get_fdata()) - truth.transpose(2, 1, 0)).max()
        ta = np.abs(ours.affine - truth_affine).max()
        if t > 1e-3 or ta > 1e-3:
            failures.append(f"{name}: differs from the generator's volume by {t} HU / affine by {ta} mm")
        msg += f"; vs generator: voxels {t:g}, affine {ta:g}"
    print(msg)


def lps_affine(row, col, step, origin, spacing):
    """The generator's voxel (column, row, slice) -> RAS affine, slices in ascending position order."""
    m = np.eye(4)
    m[:3, 0] = np.array(row) * spacing[1]
    m[:3, 1] = np.array(col) * spacing[0]
    m[:3, 2] = step
    m[:3, 3] = origin
    return np.diag([-1, -1, 1, 1]) @ m


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    print("CT series: medvlp vs dcm2niix", subprocess.run(["dcm2niix", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip())
    spacing = (0.7, 0.8)
    compared = 0
    for i, (name, row, col, step) in enumerate(regular_cases()):
        vol = phantom(12, 40, 48, seed=i)
        origin = (-20.0, 15.0, 30.0)
        folder = os.path.join(WORK, name)
        write_series(folder, vol, row, col, step, origin, spacing)
        try:
            ours = medvlp_volume(folder, os.path.join(WORK, name + ".nii.gz"))
            ref = dcm2niix_volume(folder, os.path.join(WORK, name + "_dcm2niix"))
        except RuntimeError as e:
            failures.append(f"{name}: {e}")
            continue
        # medvlp orders slices by position along row x col; the generator's k runs along `step`.
        normal = np.cross(row, col)
        ascending = np.dot(step, normal) > 0
        truth = vol if ascending else vol[::-1]
        first = origin if ascending else tuple(origin[j] + 11 * step[j] for j in range(3))
        kstep = np.array(step) if ascending else -np.array(step)
        compare(name, ours, ref, truth, lps_affine(row, col, kstep, first, spacing))
        compared += 1
    if compared != len(regular_cases()):
        failures.append(f"{compared} of {len(regular_cases())} regular series compared")

    # Gantry tilt: axial orientation, slices stepping along z and y. By default medvlp resamples the
    # slices onto an orthogonal grid as dcm2niix does (its *_Tilt_1.nii); with --keep-tilt the
    # affine keeps the shear and maps each slice onto its ImagePositionPatient.
    for name, degrees in (("tilted", 15.0), ("tilted_back", -10.0)):
        step = (0.0, 2.5 * np.tan(np.radians(degrees)), 2.5)
        vol = phantom(10, 40, 48, seed=9)
        folder = os.path.join(WORK, name)
        # Instance numbers in slice order, as scanners write them: dcm2niix 1.0.20220720 skips its tilt
        # correction when it has to reorder the slices first.
        write_series(folder, vol, (1, 0, 0), (0, 1, 0), step, (0.0, 0.0, 0.0), spacing, shuffle=False)
        try:
            kept = medvlp_volume(folder, os.path.join(WORK, name + "_kept.nii.gz"), "--keep-tilt")
            a = kept.affine
            for k in range(10):
                want = np.diag([-1, -1, 1]) @ np.array([k * s for s in step])
                got = (a @ np.array([0, 0, k, 1]))[:3]
                if np.abs(got - want).max() > 1e-3:
                    failures.append(f"{name} --keep-tilt: slice {k} maps to {got.tolist()}, its ImagePositionPatient is {want.tolist()}")
                    break
            if np.abs(np.asarray(kept.get_fdata()) - vol.transpose(2, 1, 0)).max() > 1e-3:
                failures.append(f"{name} --keep-tilt: voxels differ from the generator's")
            raw = medvlp_volume(folder, os.path.join(WORK, name + ".nii.gz"))
            # The truth from the generator's geometry: slice k's row j lies at LPS y = k*step_y + j*pitch.
            # The orthogonal grid covers every slice from the smallest y on, in whole rows; each slice is
            # interpolated linearly along y, and where it has no data the volume's minimum fills in.
            pitch, ys = spacing[0], [k * step[1] for k in range(10)]
            rows = 40 + int(np.ceil((max(ys) - min(ys)) / pitch - 1e-6))
            truth = np.full((48, rows, 10), vol.min())
            for k in range(10):
                j = (min(ys) + pitch * np.arange(rows) - ys[k]) / pitch
                inside = (j > -1e-6) & (j < 39 + 1e-6)
                for i in range(48):
                    truth[i, inside, k] = np.interp(j[inside], np.arange(40), vol[k, :, i])
            got = np.asarray(raw.get_fdata())
            want_affine = np.array([[-spacing[1], 0, 0, 0], [0, -pitch, 0, -min(ys)], [0, 0, 2.5, 0], [0, 0, 0, 1]])
            if got.shape != truth.shape:
                failures.append(f"{name}: corrected shape {got.shape}, expected {truth.shape}")
                continue
            if np.abs(got - truth).max() > 1e-2 or np.abs(raw.affine - want_affine).max() > 1e-4:
                failures.append(f"{name}: corrected volume differs from the generator's geometry by "
                                f"{np.abs(got - truth).max()} HU, affine by {np.abs(raw.affine - want_affine).max()}")
                continue
            # dcm2niix's tilt correction: the same grid; it places the grid a whole number of rows from
            # the first slice and the slices up to a fraction of a row from where their positions put
            # them, so its voxels agree in the main, not at every edge.
            out_dir = os.path.join(WORK, name + "_dcm2niix")
            os.makedirs(out_dir)
            subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "ref", "-o", out_dir, folder], capture_output=True)
            tilt_files = glob.glob(os.path.join(out_dir, "*_Tilt_*.nii"))
            if len(tilt_files) != 1:
                raise RuntimeError(f"dcm2niix wrote no single tilt-corrected file: {os.listdir(out_dir)}")
            ours, ref = nib.as_closest_canonical(raw), nib.as_closest_canonical(nib.load(tilt_files[0]))
            o, r = np.asarray(ours.get_fdata()), np.asarray(ref.get_fdata())
            if o.shape != r.shape:
                failures.append(f"{name}: corrected shape {o.shape}, dcm2niix {r.shape}")
                continue
            median = np.median(np.abs(o - r))
            lin = np.abs(ours.affine[:3, :3] - ref.affine[:3, :3]).max()
            origin = np.abs(ours.affine[:3, 3] - ref.affine[:3, 3]).max()
            if median > 5.0 or lin > 1e-3 or origin > pitch:
                failures.append(f"{name}: vs dcm2niix's tilt correction: median |diff| {median} HU, affine {lin}, "
                                f"origin {origin} mm")
            else:
                print(f"  {name} ({degrees:+.0f} deg): resampled onto the generator's orthogonal grid {list(got.shape)}; "
                      f"dcm2niix's grid the same, origin {origin:.3f} mm apart, median |diff| {median:.1f} HU; "
                      f"--keep-tilt keeps the shear")
        except RuntimeError as e:
            failures.append(f"{name}: {e}")

    # A missing slice and uneven spacing are reported, naming the folder and the positions.
    for name, zs, want in (("missing_slice", [0, 2.5, 5, 10, 12.5, 15], "missing slice(s) between positions 5 and 10 mm"),
                           ("uneven", [0, 2.5, 5, 8, 10.5, 13], "inconsistent slice spacing between positions 5 and 8 mm")):
        folder = os.path.join(WORK, name)
        write_series(folder, phantom(len(zs), 8, 10, seed=3), (1, 0, 0), (0, 1, 0), None, None, spacing,
                     positions=[(0.0, 0.0, z) for z in zs])
        r = subprocess.run([BIN, "inspect", folder], capture_output=True, text=True)
        if r.returncode == 0 or f"{folder}: {want}" not in r.stderr:
            failures.append(f"{name}: expected an error with '{folder}: {want}', got rc {r.returncode}: {r.stderr.strip()}")
        else:
            print(f"  {name}: reported ({want})")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
