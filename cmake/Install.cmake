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

set(MEDVLP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/medvlp)
install(EXPORT medvlpTargets NAMESPACE medvlp:: DESTINATION ${MEDVLP_CMAKE_DIR})
configure_package_config_file(cmake/medvlpConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/medvlpConfig.cmake INSTALL_DESTINATION ${MEDVLP_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/medvlpConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/medvlpConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/medvlpConfigVersion.cmake
        DESTINATION ${MEDVLP_CMAKE_DIR})
