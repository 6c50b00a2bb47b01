#!/usr/bin/env bash
# Seeds for dicom_fuzz: pydicom's small test files plus a CT slice in each syntax DCMTK writes.
set -u
out=$1
src=/usr/lib/python3/dist-packages/pydicom/data/test_files
[ -d "$src" ] || exit 0
find "$src" -maxdepth 1 -name '*.dcm' -size -64k -exec cp {} "$out"/ \;
for spec in "dcmcjpeg +el" "dcmcjpeg +e1" "dcmcjpls +el" "dcmcrle" "dcmconv +td" "dcmconv +tb"; do
  set -- $spec
  command -v "$1" >/dev/null && "$@" "$src/CT_small.dcm" "$out/ct_${1}_${2:-x}.dcm" 2>/dev/null
done
# JPEG 2000 (lossless and lossy) re-encoded by GDCM, whose codec DCMTK lacks.
/usr/bin/python3 - "$src/CT_small.dcm" "$out" <<'PY' 2>/dev/null
import sys
try:
    import gdcm
except ImportError:
    sys.exit(0)
for name, syntax in (("ct_j2k_lossless.dcm", gdcm.TransferSyntax.JPEG2000Lossless), ("ct_j2k.dcm", gdcm.TransferSyntax.JPEG2000)):
    reader = gdcm.ImageReader()
    reader.SetFileName(sys.argv[1])
    if not reader.Read():
        sys.exit(0)
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    if change.Change():
        writer = gdcm.ImageWriter()
        writer.SetFileName(sys.argv[2] + "/" + name)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        writer.Write()
PY
exit 0
