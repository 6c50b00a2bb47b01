include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS medvlp EXPORT medvlpTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS medvlp_spm LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/medvlp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(MEDVLP_BUILD_APPS)
  install(TARGETS medvlp_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(DIRECTORY configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/medvlp/configs)
# The Python loader of `medvlp export` folders, found beside the configs (export copies it along).
install(FILES python/medvlp_model.py DESTINATION ${CMAKE_INSTALL_DATADIR}/medvlp/python)

set(MEDVLP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/medvlp)
install(EXPORT medvlpTargets NAMESPACE medvlp:: DESTINATION ${MEDVLP_CMAKE_DIR})
configure_package_config_file(cmake/medvlpConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/medvlpConfig.cmake INSTALL_DESTINATION ${MEDVLP_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/medvlpConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/medvlpConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/medvlpConfigVersion.cmake
        DESTINATION ${MEDVLP_CMAKE_DIR})

# `cmake --build BUILD --target package`: one Debian package with the library, its headers and CMake
# package, the medvlp command and the configs, under /usr. Stripped: the RelWithDebInfo build's
# debug information is ~250 MB. Runtime dependencies come from dpkg-shlibdeps; building against the
# package needs the development packages of what the public headers include.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME medvlp)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "medvlp developers")
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ${MEDVLP_DEB_SHLIBDEPS})  # see cmake/Dependencies.cmake
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libtorch-dev, nlohmann-json3-dev, cmake")
include(CPack)
