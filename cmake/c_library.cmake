# libedgellama: the C ABI (include/edgellama.h) for apps without Python.
#
#   libedgellama.so              the front, compiled for the baseline CPU: the exported functions,
#                                CPU detection, and dlopen of the best level module beside it
#   libedgellama-<level>.so      one per CPU level: the whole core of that level plus the ABI's
#                                implementation (csrc/capi), exporting only edgellama_level_api_get
#
# A wheel ships them in the package folder (edgellama/, where edgellama.capi finds them); a plain
# CMake build installs them into the library folder with the header, a pkg-config file and a
# CMake package (find_package(edgellama) -> edgellama::edgellama).
include(GNUInstallDirs)

set(EDGELLAMA_CAPI_LEVEL_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/capi/level_module.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/capi/model_api.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/capi/sampler_api.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/capi/status.cpp)

if(SKBUILD)
  set(_edgellama_c_libdir edgellama)
else()
  set(_edgellama_c_libdir ${CMAKE_INSTALL_LIBDIR})
endif()

foreach(level ${EDGELLAMA_CPU_LEVELS})
  add_library(edgellama_level_${level} MODULE ${EDGELLAMA_CAPI_LEVEL_SOURCES})
  set_target_properties(edgellama_level_${level} PROPERTIES
    OUTPUT_NAME "edgellama-${level}" PREFIX "lib" SUFFIX ".so"
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_compile_definitions(edgellama_level_${level} PRIVATE EDGELLAMA_LEVEL_NAME="${level}")
  target_compile_options(edgellama_level_${level} PRIVATE -O2 -Wall -Wextra ${EDGELLAMA_FLAGS_${level}}
                         ${EDGELLAMA_SANITIZE_FLAGS})
  # Its own definitions only, never another level's: -Bsymbolic binds its references inside it, the
  # version script keeps everything but the table local.
  target_link_options(edgellama_level_${level} PRIVATE -Wl,-Bsymbolic -Wl,--no-undefined
                      -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/cmake/level_module.map)
  set_property(TARGET edgellama_level_${level} APPEND PROPERTY LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/level_module.map)
  target_link_libraries(edgellama_level_${level} PRIVATE edgellama_core_${level})
  install(TARGETS edgellama_level_${level} LIBRARY DESTINATION ${_edgellama_c_libdir})
endforeach()

add_library(edgellama SHARED ${CMAKE_CURRENT_SOURCE_DIR}/csrc/capi/front.cpp)
set_target_properties(edgellama PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
                                           PUBLIC_HEADER ${CMAKE_CURRENT_SOURCE_DIR}/include/edgellama.h)
if(NOT SKBUILD)
  # A wheel keeps one file (it cannot hold the SONAME symlinks); an installed library is versioned
  # by its ABI.
  set_target_properties(edgellama PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION 1)
endif()
target_compile_definitions(edgellama PRIVATE EDGELLAMA_VERSION_STRING="${PROJECT_VERSION}")
target_compile_options(edgellama PRIVATE -O2 -Wall -Wextra ${EDGELLAMA_FLAGS_${EDGELLAMA_BASELINE_LEVEL}}
                       ${EDGELLAMA_SANITIZE_FLAGS})
target_include_directories(edgellama
  PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
  INTERFACE $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_link_libraries(edgellama PRIVATE edgellama_cpu_features ${CMAKE_DL_LIBS})
target_link_options(edgellama PRIVATE -Wl,--no-undefined -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/cmake/libedgellama.map)
set_property(TARGET edgellama APPEND PROPERTY LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/libedgellama.map)
# The front finds its level modules beside itself; building them with it keeps the build folder usable.
foreach(level ${EDGELLAMA_CPU_LEVELS})
  add_dependencies(edgellama edgellama_level_${level})
endforeach()

if(SKBUILD)
  install(TARGETS edgellama LIBRARY DESTINATION edgellama PUBLIC_HEADER DESTINATION edgellama/include)
else()
  install(TARGETS edgellama EXPORT edgellamaTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT edgellamaTargets NAMESPACE edgellama:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/edgellama)
  include(CMakePackageConfigHelpers)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfig.cmake
       "include(\"\${CMAKE_CURRENT_LIST_DIR}/edgellamaTargets.cmake\")\n")
  write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfigVersion.cmake
                                   COMPATIBILITY SameMajorVersion)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/edgellamaConfigVersion.cmake
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/edgellama)
  configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/edgellama.pc.in ${CMAKE_CURRENT_BINARY_DIR}/edgellama.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/edgellama.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
