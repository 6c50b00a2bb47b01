# Every dependency comes from Debian packages (or a LibTorch 2.x tree on GPU machines);
# nothing is downloaded.
find_package(Torch REQUIRED)
if(MEDVLP_WITH_OPENCV)
  find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs)
endif()
find_package(yaml-cpp REQUIRED)
# ICU: Unicode normalization and character classes for the tokenizers (BERT, CLIP).
find_package(ICU REQUIRED COMPONENTS uc)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(spdlog REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
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

