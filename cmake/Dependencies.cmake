# Every dependency comes from Debian packages (or a LibTorch 2.x tree on GPU machines);
# nothing is downloaded.
find_package(Torch REQUIRED)
if(MEDVLP_WITH_OPENCV)
  find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs)
endif()
find_package(yaml-cpp REQUIRED)
# ICU: Unicode normalization and character classes for the tokenizers (BERT, CLIP).
find_package(ICU REQUIRED COMPONENTS uc)
# DICOM (with DCMTK's JPEG, JPEG-LS and RLE decoders) and NIfTI.
find_package(DCMTK REQUIRED CONFIG)
# Debian's NIFTIConfig.cmake points at /usr/lib/libznz.so.3.0.0, which the package does not
# ship, so the library is found by hand.
find_path(MEDVLP_NIFTI_INCLUDE nifti2_io.h PATH_SUFFIXES nifti REQUIRED)
find_library(MEDVLP_NIFTI2_LIBRARY nifti2 REQUIRED)
find_library(MEDVLP_ZNZ_LIBRARY znz REQUIRED)
find_package(ZLIB REQUIRED)
# libdeflate inflates a whole .nii.gz into its final buffer at about twice zlib's streaming speed.
find_path(MEDVLP_DEFLATE_INCLUDE libdeflate.h REQUIRED)  # a default include dir on Debian; only checked
find_library(MEDVLP_DEFLATE_LIBRARY deflate REQUIRED)
add_library(medvlp_nifti INTERFACE)
target_include_directories(medvlp_nifti SYSTEM INTERFACE ${MEDVLP_NIFTI_INCLUDE})
target_link_libraries(medvlp_nifti INTERFACE ${MEDVLP_NIFTI2_LIBRARY} ${MEDVLP_ZNZ_LIBRARY} ${MEDVLP_DEFLATE_LIBRARY} ZLIB::ZLIB m)
# TensorBoard event files: protoc compiles src/io/event.proto, libprotobuf serializes the records.
find_package(Protobuf REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(spdlog REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
# JPEG 2000 DICOM pixel data, which DCMTK's free toolkit cannot decode.
pkg_check_modules(OPENJPEG REQUIRED IMPORTED_TARGET libopenjp2)
if(MEDVLP_BUILD_APPS)
  find_package(CLI11 REQUIRED)
endif()
if(MEDVLP_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
message(STATUS "medvlp: LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")

# yaml-cpp's target name changed between releases.
if(TARGET yaml-cpp::yaml-cpp)
  set(MEDVLP_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(MEDVLP_YAML_TARGET yaml-cpp)
endif()

# The Debian package's dependencies come from dpkg-shlibdeps, which names the Debian packages of the
# linked libraries; a LibTorch from a Python wheel (the CUDA build) belongs to no package and would
# make it fail, so such a package declares no dependencies (cmake/Install.cmake).
if(Torch_DIR MATCHES "^/usr/")
  set(MEDVLP_DEB_SHLIBDEPS ON)
else()
  set(MEDVLP_DEB_SHLIBDEPS OFF)
endif()
