# cmake/install.cmake -- `cmake --install build --prefix P`: bin/netc, lib/libnetrt.a
# (and libnetrt_cl.a, libnetrt_mpi.a), include/netrt.h, pkg-config files (netrt.pc,
# netrt-opencl.pc, netrt-mpi.pc) and a CMake package (lib/cmake/netrt). The
# installed netc finds the runtime next to itself (tools/build.c), so the tree is
# relocatable and needs no build directory.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
# The version, from its one definition in tools/netc.c.
file(STRINGS ${CMAKE_SOURCE_DIR}/tools/netc.c netc_version_line REGEX "^#define NETC_VERSION ")
string(REGEX REPLACE ".*\"(.*)\".*" "\\1" NETC_VERSION "${netc_version_line}")

install(TARGETS netc RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
set(netc_rt_targets netrt)
if(TARGET netrt_cl)
  list(APPEND netc_rt_targets netrt_cl)
  set(NETC_HAVE_OPENCL 1)
else()
  set(NETC_HAVE_OPENCL 0)
endif()
if(TARGET netrt_mpi)
  list(APPEND netc_rt_targets netrt_mpi)
  set(NETC_HAVE_MPI 1)
else()
  set(NETC_HAVE_MPI 0)
endif()
install(TARGETS ${netc_rt_targets} EXPORT netrtTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_SOURCE_DIR}/runtime/netrt.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT netrtTargets NAMESPACE netrt:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/netrt)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/netrtConfig.cmake.in
  ${CMAKE_BINARY_DIR}/netrtConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/netrt)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/netrtConfigVersion.cmake
  VERSION ${NETC_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/netrtConfig.cmake ${CMAKE_BINARY_DIR}/netrtConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/netrt)

# pkg-config: libnetrt's own dependencies go on Libs, as it is a static library.
set(NETC_PC_LIBDIR ${CMAKE_INSTALL_LIBDIR})
set(NETC_PC_LIBS "${NETC_RUNTIME_EXTRA_LIBS} -lopenblas -lpng -lz -lm -lpthread")
string(STRIP "${NETC_PC_LIBS}" NETC_PC_LIBS)
configure_file(${CMAKE_SOURCE_DIR}/cmake/netrt.pc.in ${CMAKE_BINARY_DIR}/netrt.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/netrt.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(TARGET netrt_cl)
  configure_file(${CMAKE_SOURCE_DIR}/cmake/netrt-opencl.pc.in ${CMAKE_BINARY_DIR}/netrt-opencl.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/netrt-opencl.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
if(TARGET netrt_mpi)
  # The MPI libraries CMake found (absolute paths), as `netc build --mpi` links them.
  string(REPLACE ";" " " NETC_PC_MPI_LIBS "${NETC_MPI_C_LIBRARIES}")
  configure_file(${CMAKE_SOURCE_DIR}/cmake/netrt-mpi.pc.in ${CMAKE_BINARY_DIR}/netrt-mpi.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/netrt-mpi.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
