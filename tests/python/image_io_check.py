"""`medvlp inspect --save` decodes DICOM like pydicom and NIfTI like nibabel.

DICOM: pydicom's own test files (Debian python3-pydicom ships them) of every transfer syntax
medvlp decodes, plus files written at test time: a CT slice compressed by DCMTK's command-line
tools (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv; Debian package dcmtk) into each syntax. Values are
compared with pydicom's pixel_array + apply_modality_lut (JPEG/JPEG-LS through python3-gdcm).
NIfTI: volumes written by nibabel in several dtypes, scalings, affines (sform, qform only,
neither), endianness and .nii/.nii.gz; data, affine and the RAS reorientation are compared with
get_fdata(), .affine and as_closest_canonical().

Usage: image_io_check.py MEDVLP_BINARY WORK_DIR. Without pydicom/nibabel: skipped, or failed under CI=true.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import numpy as np
    import torch
    import pydicom
    from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut
    import nibabel as nib
except ImportError as e:  # pragma: no cover
    unavailable(f"{e} (Debian: python3-pydicom python3-gdcm python3-nibabel python3-torch)")

import st_io  # noqa: E402

BIN, WORK = sys.argv[1], sys.argv[2]
TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
failures = []
compared = []
counts = {}  # category -> files compared; each must equal the files the category lists


def expect(category, listed):
    """Every file of a category was compared: none dropped for a missing decoder or tool."""
    counts[category] = len(compared)
    if len(compared) != listed:
        failures.append(f"{category}: {len(compared)} of {listed} compared")
    compared.clear()


def medvlp(path):
    out = os.path.join(WORK, "out.safetensors")
    r = subprocess.run([BIN, "inspect", "--json", "--save", out, path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"medvlp inspect {path} failed: {r.stderr.strip()}")
    return json.loads(r.stdout), st_io.load(out)


def pydicom_values(path):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    spp = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if str(ds.PhotometricInterpretation) == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds).astype(np.float64)  # [frames,] rows, cols, channels
        return ds, rgb.reshape(frames, int(ds.Rows), int(ds.Columns), rgb.shape[-1]).transpose(0, 3, 1, 2)
    if spp == 1:
        arr = apply_modality_lut(arr, ds).astype(np.float64)
        arr = arr.reshape(frames, 1, int(ds.Rows), int(ds.Columns))
    else:
        if str(ds.PhotometricInterpretation) in ("YBR_FULL", "YBR_FULL_422"):
            # pydicom 2.x leaves JPEG's YCbCr as is; DCMTK's decoder converts to RGB. (JPEG 2000's
            # YBR_RCT/YBR_ICT arrive as RGB: the decoder inverts the component transform.)
            from pydicom.pixel_data_handlers.util import convert_color_space
            arr = convert_color_space(arr, "YBR_FULL", "RGB")
        arr = arr.reshape(frames, int(ds.Rows), int(ds.Columns), spp).transpose(0, 3, 1, 2).astype(np.float64)
    return ds, arr


def check_dicom(path, label, tol=0.0):
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds, ref = pydicom_values(path)
    except Exception as e:  # every file listed is one pydicom (with python3-gdcm) decodes
        failures.append(f"{label}: pydicom cannot decode it here ({type(e).__name__}: {e}): not compared")
        return
    try:
        meta, saved = medvlp(path)
    except RuntimeError as e:
        failures.append(f"{label}: {e}")
        return
    ours = saved["pixels"].double().numpy()
    if ours.shape != ref.shape:
        failures.append(f"{label}: shape {ours.shape} vs pydicom {ref.shape}")
        return
    diff = np.abs(ours - ref).max() if ref.size else 0.0
    scale = max(1.0, np.abs(ref).max())
    if diff > tol + 1e-6 * scale:
        failures.append(f"{label}: max |medvlp - pydicom| = {diff} (tolerance {tol})")
    if meta["transfer_syntax"] != str(ds.file_meta.TransferSyntaxUID):
        failures.append(f"{label}: transfer syntax {meta['transfer_syntax']} vs {ds.file_meta.TransferSyntaxUID}")
    # pydicom found the dataset's VR encoding at odds with the meta header (it warns, and reads it
    # as found) exactly when medvlp says so.
    mismatch = any("but found implicit VR" in str(w.message) for w in caught)
    if mismatch != ("warning" in meta):
        failures.append(f"{label}: pydicom {'read' if mismatch else 'did not read'} the dataset with the other VR "
                        f"encoding than its meta header; medvlp's warning: {meta.get('warning')!r}")
    for key, ref_v in (("min", ref.min()), ("max", ref.max()), ("mean", ref.mean())):
        if abs(meta[key] - ref_v) > tol + 1e-4 * scale:
            failures.append(f"{label}: {key} {meta[key]} vs {ref_v}")
    compared.append(label)
    print(f"  {label}: {meta['transfer_syntax_name']}, shape {list(ours.shape)}, max diff {diff:g}")


def dicom_checks():
    # pydicom's files; JPEG lossy compared with a tolerance (two IDCT implementations).
    shipped = {
        "CT_small.dcm": 0, "MR_small.dcm": 0, "MR_small_bigendian.dcm": 0, "MR_small_implicit.dcm": 0,
        "MR_small_expb.dcm": 0, "MR_small_RLE.dcm": 0, "MR_small_jpeg_ls_lossless.dcm": 0, "image_dfl.dcm": 0,
        "rtdose.dcm": 0, "rtdose_1frame.dcm": 0,
        "rtdose_rle.dcm": 0, "rtdose_expb.dcm": 0, "JPEG-lossy.dcm": 2, "JPGExtended.dcm": 2,
        "SC_rgb_jpeg_dcmtk.dcm": 3, "SC_ybr_full_422_uncompressed.dcm": 1, "SC_rgb_dcmtk_+eb+cr.dcm": 3, "SC_rgb_rle.dcm": 0, "SC_rgb_rle_16bit.dcm": 0, "SC_rgb_rle_2frame.dcm": 0, "SC_rgb_small_odd.dcm": 0,
        "ExplVR_BigEnd.dcm": 0, "MR_small_padded.dcm": 0,
        # An implicit-VR dataset under a meta header that says JPEG baseline (explicit VR): DCMTK
        # alone refuses it ("Invalid tag"); pydicom guesses the VR encoding from the bytes.
        "SC_rgb_jpeg.dcm": 3,
    }
    if not os.path.isdir(TEST_FILES):
        unavailable(f"pydicom's test files are not installed ({TEST_FILES}; Debian: python3-pydicom)")
    for name, tol in shipped.items():
        path = os.path.join(TEST_FILES, name)
        if not os.path.exists(path):
            failures.append(f"{name}: not among pydicom's test files ({TEST_FILES})")
            continue
        check_dicom(path, name, tol)
    expect("pydicom's test files", len(shipped))
    # A CT slice in every syntax DCMTK's tools write; lossless ones must match the original exactly.
    # Near-lossless JPEG-LS is written uninterleaved: DCMTK 3.6.7 cannot decode its own
    # interleaved near-lossless colour output (dcmdjpls fails the same way).
    ct, rgb = os.path.join(TEST_FILES, "CT_small.dcm"), os.path.join(TEST_FILES, "SC_rgb_small_odd.dcm")
    tools = [("dcmconv", ["+te"], "explicit_le", 0, ct), ("dcmconv", ["+ti"], "implicit_le", 0, ct),
             ("dcmconv", ["+tb"], "explicit_be", 0, ct), ("dcmconv", ["+td"], "deflated", 0, ct),
             ("dcmcjpeg", ["+e1"], "jpeg_lossless_sv1", 0, ct), ("dcmcjpeg", ["+el"], "jpeg_lossless", 0, ct),
             ("dcmcjpeg", ["+ee"], "jpeg_extended_12bit", 40, ct), ("dcmcjpls", ["+el"], "jpeg_ls_lossless", 0, ct),
             ("dcmcjpls", ["+en", "+md", "2", "+in"], "jpeg_ls_near_lossless", 2, rgb), ("dcmcrle", [], "rle", 0, ct)]
    missing_tools = sorted({t for t, *_ in tools if shutil.which(t) is None})
    if missing_tools:
        unavailable(f"DCMTK's {', '.join(missing_tools)} not found (Debian: dcmtk)")
    for tool, opts, label, tol, base in tools:
        out = os.path.join(WORK, f"ct_{label}.dcm")
        r = subprocess.run([tool, *opts, base, out], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{tool} {' '.join(opts)} failed: {r.stderr.strip()}")
            continue
        if tol == 0 and label != "explicit_be":
            # Lossless: compare with pydicom's decode of the uncompressed original too.
            _, ref = pydicom_values(base)
            _, saved = medvlp(out)
            d = np.abs(saved["pixels"].double().numpy() - ref).max()
            if d != 0:
                failures.append(f"{label}: lossless decode differs from the original by {d}")
        check_dicom(out, f"{os.path.basename(base)} as {label}", tol)
    expect("files re-encoded by DCMTK", len(tools))


def gdcm_jpeg2000(src, dst, lossy):
    """GDCM (python3-gdcm, OpenJPEG inside) re-encodes a file as JPEG 2000; False when it cannot."""
    import gdcm
    reader = gdcm.ImageReader()
    reader.SetFileName(src)
    if not reader.Read():
        return False
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEG2000 if lossy else
                                                 gdcm.TransferSyntax.JPEG2000Lossless))
    if lossy:
        codec = gdcm.JPEG2000Codec()
        codec.SetRate(0, 15.0)  # ~15:1, irreversible
        change.SetUserCodec(codec)
    change.SetInput(reader.GetImage())
    if not change.Change():
        return False
    writer = gdcm.ImageWriter()
    writer.SetFileName(dst)
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    return bool(writer.Write())


def jpeg2000_checks():
    # pydicom's JPEG 2000 files (lossless and lossy; signed 14-bit; a PixelRepresentation that the
    # codestream contradicts; YBR_RCT colour), decoded by pydicom through GDCM.
    shipped = ["MR_small_jp2klossless.dcm", "JPEG2000.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm",
               "GDCMJ2K_TextGBR.dcm"]
    for name in shipped:
        path = os.path.join(TEST_FILES, name)
        if not os.path.exists(path):
            failures.append(f"{name}: not among pydicom's test files ({TEST_FILES})")
            continue
        check_dicom(path, name)
    expect("pydicom's JPEG 2000 files", len(shipped))
    # Files re-encoded by GDCM: a signed CT slice (lossless, and ~15:1 lossy), RGB in one and two
    # frames; lossless ones must also equal the original.
    ct, mr = os.path.join(TEST_FILES, "CT_small.dcm"), os.path.join(TEST_FILES, "MR_small.dcm")
    rgb, rgb2 = os.path.join(TEST_FILES, "SC_rgb_rle.dcm"), os.path.join(TEST_FILES, "SC_rgb_rle_2frame.dcm")
    cases = [(ct, "ct_j2k_lossless", False), (ct, "ct_j2k_lossy", True), (mr, "mr_j2k_lossless", False),
             (rgb, "rgb_j2k_lossless", False), (rgb2, "rgb_2frame_j2k_lossless", False)]
    for base, label, lossy in cases:
        out = os.path.join(WORK, label + ".dcm")
        if not gdcm_jpeg2000(base, out, lossy):
            failures.append(f"{label}: GDCM could not re-encode {os.path.basename(base)}")
            continue
        if not lossy:
            _, ref = pydicom_values(base)
            _, saved = medvlp(out)
            d = np.abs(saved["pixels"].double().numpy() - ref).max()
            if d != 0:
                failures.append(f"{label}: lossless JPEG 2000 decode differs from the original by {d}")
        check_dicom(out, f"{os.path.basename(base)} as {label}")
    expect("files re-encoded as JPEG 2000 by GDCM", len(cases))
    # A damaged codestream header (SIZ zeroed) is an error naming the file, not a crash.
    data = bytearray(open(os.path.join(WORK, "ct_j2k_lossless.dcm"), "rb").read())
    soc = data.find(b"\xff\x4f\xff\x51")
    if soc < 0:
        failures.append("ct_j2k_lossless.dcm: no SOC+SIZ markers found to damage")
        return
    data[soc + 4:soc + 40] = bytes(36)
    bad = os.path.join(WORK, "ct_j2k_damaged.dcm")
    open(bad, "wb").write(data)
    r = subprocess.run([BIN, "inspect", "--json", "--save", os.path.join(WORK, "bad.safetensors"), bad],
                       capture_output=True, text=True)
    if r.returncode != 1 or f"{bad}: the JPEG 2000" not in r.stderr:
        failures.append(f"damaged JPEG 2000: exit {r.returncode}, stderr {r.stderr.strip()!r}")
    else:
        print(f"  damaged JPEG 2000 header: {r.stderr.strip().splitlines()[-1]}")


def ybr_checks():
    """Uncompressed and RLE YBR_FULL (the pixels of pydicom's SC_rgb_rle_2frame.dcm turned into
    YCbCr by pydicom), compared with pydicom's values converted to RGB as its convert_color_space
    does; pydicom's own uncompressed YBR_FULL_422 file is among the shipped files above."""
    from pydicom.pixel_data_handlers.util import convert_color_space
    from pydicom.uid import ExplicitVRLittleEndian
    src = pydicom.dcmread(os.path.join(TEST_FILES, "SC_rgb_rle_2frame.dcm"))
    ybr = convert_color_space(src.pixel_array, "RGB", "YBR_FULL")
    src.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    src.PhotometricInterpretation, src.PlanarConfiguration = "YBR_FULL", 0
    src.PixelData = ybr.astype(np.uint8).tobytes()
    src.is_little_endian, src.is_implicit_VR = True, False
    plain = os.path.join(WORK, "ybr_full.dcm")
    src.save_as(plain, write_like_original=False)
    check_dicom(plain, "YBR_FULL, uncompressed, 2 frames", 1)
    if shutil.which("dcmcrle") is None:
        unavailable("DCMTK's dcmcrle not found (Debian: dcmtk)")
    rle = os.path.join(WORK, "ybr_full_rle.dcm")
    r = subprocess.run(["dcmcrle", plain, rle], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"dcmcrle {plain} failed: {r.stderr.strip()}")
    else:
        check_dicom(rle, "YBR_FULL, RLE, 2 frames", 1)
    expect("YBR_FULL images", 2)


def modality_lut_checks():
    """A Modality LUT Sequence in place of the rescale (pydicom's CT slice given a 2048-entry table
    from stored value 100, so values below and past it clip), against pydicom's apply_modality_lut."""
    from pydicom.sequence import Sequence
    ds = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
    del ds.RescaleSlope, ds.RescaleIntercept
    item = pydicom.Dataset()
    item.LUTDescriptor = [2048, 100, 16]
    item.LUTExplanation, item.ModalityLUTType = "test table", "HU"
    rng = np.random.default_rng(11)
    item.add(pydicom.DataElement(0x00283006, "OW", rng.integers(0, 65536, 2048).astype("<u2").tobytes()))
    ds.ModalityLUTSequence = Sequence([item])
    out = os.path.join(WORK, "ct_modality_lut.dcm")
    ds.save_as(out)
    check_dicom(out, "CT_small with a Modality LUT Sequence")
    expect("Modality LUT Sequence", 1)


def un_checks():
    """Elements stored with VR UN (as archives and anonymizers leave them) are read through the data
    dictionary, as pydicom does: wrong modality, UIDs or rescale values would pass unnoticed."""
    src = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
    values = {"Modality": "PT", "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1", "PatientID": "UN-1",
              "RescaleSlope": "1.94", "RescaleIntercept": "-3.5", "PixelSpacing": "0.5\\0.75"}
    # pydicom would otherwise give them their dictionary VRs again as they are made.
    pydicom.config.replace_un_with_known_vr = False
    for keyword, value in values.items():
        raw = value.encode("ascii")
        if len(raw) % 2:
            raw += b"\0" if keyword.endswith("UID") else b" "
        tag = pydicom.datadict.tag_for_keyword(keyword)
        del src[tag]
        src.add(pydicom.DataElement(tag, "UN", raw))
    out = os.path.join(WORK, "ct_un.dcm")
    src.save_as(out)
    pydicom.config.replace_un_with_known_vr = True
    with open(out, "rb") as f:
        data = f.read()
    for keyword in values:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        header = (tag >> 16).to_bytes(2, "little") + (tag & 0xFFFF).to_bytes(2, "little") + b"UN"
        if header not in data:
            failures.append(f"VR UN: pydicom did not write {keyword} as UN")
    check_dicom(out, "CT_small with UN elements")
    ds = pydicom.dcmread(out)
    meta, _ = medvlp(out)
    want = {"modality": str(ds.Modality), "series_uid": str(ds.SeriesInstanceUID), "patient_id": str(ds.PatientID),
            "rescale": [float(ds.RescaleSlope), float(ds.RescaleIntercept)],
            "spacing": [float(v) for v in ds.PixelSpacing]}
    if want["modality"] != "PT" or want["rescale"] != [1.94, -3.5]:
        failures.append(f"VR UN: pydicom reads {want}, not the values written")
    for key, ref in want.items():
        if meta.get(key) != ref:
            failures.append(f"VR UN: {key} {meta.get(key)!r} vs pydicom {ref!r}")
    expect("elements stored as UN", 1)


def palette_checks():
    """PALETTE COLOR images through the DICOM standard's well-known palettes that pydicom ships (8-bit
    entries) and through a 16-bit table mapping from index 100, little- and big-endian, against
    pydicom's apply_color_lut."""
    from pydicom.data import get_palette_files
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    rows, cols = 40, 64

    def write(name, indices, bits, palette):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(WORK, name)
        ds = FileDataset(path, pydicom.Dataset(), file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "OT", "palette"
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "PALETTE COLOR"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
        for colour in ("Red", "Green", "Blue"):
            for part in ("Descriptor", "Data"):
                keyword = f"{colour}PaletteColorLookupTable{part}"
                ds.add(pydicom.DataElement(pydicom.datadict.tag_for_keyword(keyword), palette[keyword][0],
                                           palette[keyword][1]))
        ds.PixelData = indices.astype("<u1" if bits == 8 else "<u2").tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
        return path

    def from_file(palette_name):
        src = pydicom.dcmread(get_palette_files(palette_name)[0])
        out = {}
        for colour in ("Red", "Green", "Blue"):
            for part in ("Descriptor", "Data"):
                el = src[f"{colour}PaletteColorLookupTable{part}"]
                out[f"{colour}PaletteColorLookupTable{part}"] = (el.VR, el.value)
        return out

    gradient = np.add.outer(np.arange(rows) * 3, np.arange(cols) * 2) % 256
    files = [write("palette_pet.dcm", gradient, 8, from_file("pet.dcm")),
             write("palette_hotiron.dcm", gradient[::-1], 8, from_file("hotiron.dcm"))]
    rng = np.random.default_rng(4)
    table = {}
    for k, colour in enumerate(("Red", "Green", "Blue")):
        table[f"{colour}PaletteColorLookupTableDescriptor"] = ("US", [3000, 100, 16])
        table[f"{colour}PaletteColorLookupTableData"] = ("OW", rng.integers(0, 65536, 3000).astype("<u2").tobytes())
    indices16 = rng.integers(0, 3400, (rows, cols))  # below 100 and past 3099 clip to the ends
    files.append(write("palette_16bit.dcm", indices16, 16, table))
    if shutil.which("dcmconv") is None:
        unavailable("DCMTK's dcmconv not found (Debian: dcmtk)")
    for path in files:
        check_dicom(path, os.path.basename(path))
    # Big-endian copies (DCMTK's dcmconv) decode to the little-endian originals' colours. Compared with
    # pydicom's decode of the original: pydicom 2.3's apply_color_lut takes a big-endian file's table
    # bytes as little-endian, so it swaps the bytes of 16-bit entries and the order of 8-bit pairs.
    if shutil.which("dcmconv") is None:
        unavailable("DCMTK's dcmconv not found (Debian: dcmtk)")
    for src in (files[0], files[2]):
        big = src.replace(".dcm", "_bigendian.dcm")
        r = subprocess.run(["dcmconv", "+tb", src, big], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"dcmconv +tb {src} failed: {r.stderr.strip()}")
            continue
        _, ref = pydicom_values(src)
        meta, saved = medvlp(big)
        diff = np.abs(saved["pixels"].double().numpy() - ref).max()
        if meta["transfer_syntax"] != "1.2.840.10008.1.2.2" or diff != 0:
            failures.append(f"{os.path.basename(big)}: {meta['transfer_syntax_name']}, differs from the original by {diff}")
        else:
            compared.append(big)
            print(f"  {os.path.basename(big)}: Big Endian Explicit, equal to pydicom's decode of the original")
    expect("PALETTE COLOR images", 5)


def nifti_checks():
    rng = np.random.default_rng(0)
    cases = []
    aff = np.array([[-0.8, 0.05, 0, 90], [0.02, 0.75, 0.1, -120], [0, -0.1, 2.5, -60], [0, 0, 0, 1]])
    cases.append(("int16_scaled.nii.gz", np.int16, aff, 1, 1, (2.0, -1024.0), "<"))
    cases.append(("float32.nii", np.float32, aff, 1, 0, None, "<"))
    cases.append(("uint16_bigendian.nii", np.uint16, aff, 2, 2, None, ">"))
    cases.append(("uint8_qform_only.nii.gz", np.uint8, aff, 0, 1, (0.5, 3.0), "<"))
    cases.append(("float64_no_xform.nii", np.float64, aff, 0, 0, None, "<"))
    # LPS- and PIR-like layouts exercise the reorientation.
    lps = np.array([[1.2, 0, 0, -100], [0, 1.2, 0, -90], [0, 0, -3.0, 50], [0, 0, 0, 1]])
    cases.append(("int32_lps.nii.gz", np.int32, lps, 1, 1, None, "<"))
    pir = np.array([[0, 0, -1.0, 10], [-0.9, 0, 0, 20], [0, -1.1, 0, 30], [0, 0, 0, 1]])
    cases.append(("int16_pir.nii", np.int16, pir, 2, 0, None, "<"))
    # The in-place reader: other widths, byte order with scaling, and a volume large enough for
    # its huge-page buffer (float32 of 4 MiB or more).
    cases.append(("uint32_bigendian_scaled.nii.gz", np.uint32, aff, 1, 1, (0.25, 10.0), ">"))
    cases.append(("int8.nii", np.int8, lps, 1, 0, None, "<"))
    cases.append(("float32_bigendian_scaled.nii.gz", np.float32, aff, 1, 1, (2.0, 1.0), ">"))
    cases.append(("int16_large_lps.nii.gz", np.int16, lps, 1, 1, (1.0, -1024.0), "<", (128, 128, 72)))
    cases.append(("int16_large_members.nii.gz", np.int16, aff, 1, 1, (1.0, -1024.0), "<", (128, 128, 72)))
    for name, dtype, affine, scode, qcode, scale, order, *size in cases:
        shape = size[0] if size else (7, 6, 5)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            data = rng.integers(max(info.min, -3000), min(info.max, 3000), size=shape).astype(dtype)
        else:
            data = (rng.standard_normal(shape) * 100).astype(dtype)
        img = nib.Nifti1Image(data, affine)
        hdr = img.header
        if order == ">":
            img = nib.Nifti1Image(data, affine, header=hdr.as_byteswapped(">"))
        img.set_sform(affine, code=scode)
        img.set_qform(affine, code=qcode)
        if scale:
            img.header.set_slope_inter(*scale)
        path = os.path.join(WORK, name)
        nib.save(img, path)
        if "members" in name:
            # Two gzip members, as bgzip or `cat a.gz b.gz` write; nibabel reads them as one stream.
            with gzip.open(path, "rb") as f:
                raw = f.read()
            with open(path, "wb") as f:
                f.write(gzip.compress(raw[: len(raw) // 2]) + gzip.compress(raw[len(raw) // 2:]))
        ref = nib.load(path)
        meta, saved = medvlp(path)
        ours = saved["data"].double().numpy()  # [z, y, x]
        want = np.asarray(ref.get_fdata()).transpose(2, 1, 0)
        d = np.abs(ours - want).max()
        if d > 1e-4 * max(1.0, np.abs(want).max()):
            failures.append(f"{name}: data differ from nibabel by {d}")
        a = np.array(meta["affine"])
        if np.abs(a - ref.affine).max() > 1e-4:
            failures.append(f"{name}: affine {a.tolist()} vs nibabel {ref.affine.tolist()}")
        codes = "".join(nib.aff2axcodes(ref.affine))
        if meta["orientation"] != codes:
            failures.append(f"{name}: orientation {meta['orientation']} vs nibabel {codes}")
        compared.append(name)
        print(f"  {name}: shape {meta['shape']}, {codes}, data diff {d:g}")
        # Reorientation: medvlp's RAS copy, written out by medvlp as NIfTI, against as_closest_canonical.
        ras_path = os.path.join(WORK, "ras_" + name)
        r = subprocess.run([BIN, "inspect", "--json", "--ras", "--save", ras_path, path], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"medvlp inspect --ras {name}: {r.stderr.strip()}")
            continue
        if json.loads(r.stdout)["orientation"] != "RAS":
            failures.append(f"{name}: --ras gave {json.loads(r.stdout)['orientation']}")
        canon = nib.as_closest_canonical(ref)
        ours = nib.load(ras_path)
        cd = np.asarray(canon.get_fdata())
        if ours.shape != canon.shape or np.abs(ours.get_fdata() - cd).max() > 1e-3 * max(1.0, np.abs(cd).max()):
            failures.append(f"{name}: RAS data differ from as_closest_canonical")
        elif np.abs(ours.affine - canon.affine).max() > 1e-3:
            failures.append(f"{name}: RAS affine {ours.affine.tolist()} vs {canon.affine.tolist()}")
    expect("NIfTI volumes written by nibabel", len(cases))
    # .hdr/.img pairs: a NIfTI-1 pair with an oblique sform, and ANALYZE 7.5 (no orientation: nibabel's
    # base affine), read through the header and through the image file's name.
    data = (np.arange(4 * 3 * 5, dtype=np.int16).reshape(4, 3, 5) * 7 - 50)
    oblique = np.array([[0.9, -0.3, 0.0, -10.0], [0.3, 0.9, 0.1, 5.0], [0.0, -0.1, 2.5, 20.0], [0, 0, 0, 1]])
    for name, img in (("pair.hdr", nib.Nifti1Pair(data, oblique)), ("analyze.hdr", nib.AnalyzeImage(data, None))):
        path = os.path.join(WORK, name)
        nib.save(img, path)
        ref = nib.load(path)
        want = np.asarray(ref.get_fdata()).transpose(2, 1, 0)
        ok = True
        for given in (path, path[:-4] + ".img"):
            meta, saved = medvlp(given)
            ours = saved["data"].double().numpy()
            if ours.shape != want.shape or np.abs(ours - want).max() > 1e-6:
                failures.append(f"{os.path.basename(given)}: data differ from nibabel's")
                ok = False
            elif np.abs(np.array(meta["affine"]) - ref.affine).max() > 1e-4:
                failures.append(f"{os.path.basename(given)}: affine {meta['affine']} vs nibabel {ref.affine.tolist()}")
                ok = False
        if ok:
            counts[".hdr/.img pairs"] = counts.get(".hdr/.img pairs", 0) + 1
    # 4D and 5D files: every volume, [T, z, y, x] with dimensions 4 and up folded in file order.
    for name, shape in (("four_d.nii.gz", (5, 4, 3, 2)), ("five_d.nii", (4, 3, 2, 2, 3))):
        data = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape, order="F") * 0.5 - 3).astype(np.float32)
        path = os.path.join(WORK, name)
        nib.save(nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0])), path)
        meta, saved = medvlp(path)
        ref = np.asarray(nib.load(path).get_fdata())
        want = ref.reshape(shape[:3] + (-1,), order="F").transpose(3, 2, 1, 0)
        ours = saved["data"].double().numpy()
        if ours.shape != want.shape or np.abs(ours - want).max() > 1e-6:
            failures.append(f"{name}: data {ours.shape} differ from nibabel's {want.shape}")
        elif len(meta.get("volumes", [])) != want.shape[0] or any(
                abs(v["mean"] - want[t].mean()) > 1e-6 for t, v in enumerate(meta["volumes"])):
            failures.append(f"{name}: per-volume statistics {meta.get('volumes')} differ from numpy")
        else:
            counts["NIfTI with several volumes"] = counts.get("NIfTI with several volumes", 0) + 1
    # NaN and infinite voxels: counted, and the statistics are those of the finite values (numpy's nan*).
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(4, 3, 2) - 7
    data[0, 0, 0], data[1, 2, 1], data[3, 1, 0] = np.nan, np.inf, -np.inf
    path = os.path.join(WORK, "nonfinite.nii.gz")
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    meta, _ = medvlp(path)
    finite = data[np.isfinite(data)]
    if meta.get("nonfinite") != 3 or abs(meta["min"] - finite.min()) > 1e-6 or abs(meta["max"] - finite.max()) > 1e-6 \
            or abs(meta["mean"] - finite.mean()) > 1e-6:
        failures.append(f"nonfinite.nii.gz: statistics {meta.get('min')}, {meta.get('max')}, {meta.get('mean')}, "
                        f"nonfinite {meta.get('nonfinite')} vs numpy {finite.min()}, {finite.max()}, {finite.mean()}, 3")
    else:
        counts["NIfTI with non-finite voxels"] = counts.get("NIfTI with non-finite voxels", 0) + 1


def main():
    os.makedirs(WORK, exist_ok=True)
    print("DICOM vs pydicom", pydicom.__version__)
    dicom_checks()
    jpeg2000_checks()
    ybr_checks()
    modality_lut_checks()
    un_checks()
    palette_checks()
    print("NIfTI vs nibabel", nib.__version__)
    nifti_checks()
    print("compared per category: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all agree")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
