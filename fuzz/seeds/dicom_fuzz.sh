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
exit 0
