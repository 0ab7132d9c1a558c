# Kokkos and Kokkos Kernels: find an installed copy first, otherwise build the
# pinned release from a local archive (../shared/deps by default, upstream URL
# as the last resort) at configure time, into a cache OUTSIDE the repository:
#
#   ${RA_DEPS_CACHE}/<name>-<version>-<key>/{src,build,install}
#
# <key> hashes every option that changes the built library (backends, GPU
# arch, compilers, build type), so the host and both CUDA presets each get
# their own copy, and a second configure of any of them only runs find_package.

set(RA_KOKKOS_VERSION 4.6.01)
set(RA_KOKKOS_KERNELS_VERSION 4.6.02)
set(RA_KOKKOS_SHA256 b9d70e4653b87a06dbb48d63291bf248058c7c7db4bd91979676ad5609bb1a3a)
set(RA_KOKKOS_KERNELS_SHA256 a953f445660ed5aaab10e18fc4a90c4c178291e9d9d97d20abd4e6027f1193ec)

if(DEFINED ENV{RA_DEPS_ARCHIVES})
  set(_ra_default_archives "$ENV{RA_DEPS_ARCHIVES}")
else()
  set(_ra_default_archives "${PROJECT_SOURCE_DIR}/../shared/deps")
endif()
set(RA_DEPS_ARCHIVES "${_ra_default_archives}" CACHE PATH
    "Folder holding kokkos-${RA_KOKKOS_VERSION}.tar.gz and kokkos-kernels-${RA_KOKKOS_KERNELS_VERSION}.tar.gz")

if(DEFINED ENV{RA_DEPS_CACHE})
  set(_ra_default_cache "$ENV{RA_DEPS_CACHE}")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_ra_default_cache "$ENV{XDG_CACHE_HOME}/ra-kokkos/deps")
else()
  set(_ra_default_cache "$ENV{HOME}/.cache/ra-kokkos/deps")
endif()
set(RA_DEPS_CACHE "${_ra_default_cache}" CACHE PATH "Where built dependencies are cached (outside the repo)")

# RA_BACKEND: host (Serial + OpenMP) or cuda (CUDA + Serial).
set(RA_BACKEND "host" CACHE STRING "Kokkos backends to build: host or cuda")
set_property(CACHE RA_BACKEND PROPERTY STRINGS host cuda)
set(RA_CUDA_ARCH "HOPPER90" CACHE STRING "Kokkos_ARCH_<X> for the cuda backend (HOPPER90, AMPERE86, ...)")

if(RA_BACKEND STREQUAL "cuda")
  # Kokkos is compiled as CMake's CUDA language (no nvcc_wrapper, whose default
  # sm_70 CUDA 13 rejects); the arch table maps Kokkos names to sm numbers.
  set(_ra_sm_HOPPER90 90)
  set(_ra_sm_AMPERE86 86)
  set(_ra_sm_AMPERE80 80)
  set(_ra_sm_ADA89 89)
  if(NOT DEFINED _ra_sm_${RA_CUDA_ARCH})
    message(FATAL_ERROR "RA_CUDA_ARCH=${RA_CUDA_ARCH} is not one of HOPPER90, AMPERE86, AMPERE80, ADA89")
  endif()
  set(CMAKE_CUDA_ARCHITECTURES ${_ra_sm_${RA_CUDA_ARCH}})
  enable_language(CUDA)
  set(_ra_kokkos_opts
      -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_CUDA=ON
      -DKokkos_ARCH_${RA_CUDA_ARCH}=ON
      -DKokkos_ENABLE_COMPILE_AS_CMAKE_LANGUAGE=ON
      -DKokkos_ENABLE_CUDA_CONSTEXPR=ON
      -DCMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER}
      -DCMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES})
  set(_ra_kk_opts -DKokkosKernels_ENABLE_TPL_CUBLAS=ON
      -DKokkosKernels_ENABLE_TPL_CUSPARSE=OFF -DKokkosKernels_ENABLE_TPL_CUSOLVER=OFF
      -DKokkosKernels_ENABLE_TPL_CUBLASLT=OFF)
elseif(RA_BACKEND STREQUAL "host")
  set(_ra_kokkos_opts -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_OPENMP=ON)
  # KokkosBlas::gemm (the model's linear layers, the open-coded attention) goes
  # to an optimized BLAS on the host when Kokkos Kernels is built with one:
  # OpenBLAS's OpenMP flavour (scripts/install-deps.sh), which shares libgomp's
  # threads with Kokkos::OpenMP instead of spinning its own pool beside it.
  find_library(RA_OPENBLAS NAMES openblas)
  if(RA_OPENBLAS)
    get_filename_component(_ra_openblas_dir "${RA_OPENBLAS}" DIRECTORY)
    set(_ra_kk_opts -DKokkosKernels_ENABLE_TPL_BLAS=ON -DBLAS_LIBRARIES=openblas
        "-DBLAS_LIBRARY_DIRS=${_ra_openblas_dir}")
  else()
    message(STATUS "ra-kokkos: no OpenBLAS found; host GEMMs use Kokkos Kernels' own loops")
    set(_ra_kk_opts)
  endif()
else()
  message(FATAL_ERROR "RA_BACKEND must be 'host' or 'cuda', got '${RA_BACKEND}'")
endif()

set(_ra_dep_build_type ${CMAKE_BUILD_TYPE})
if(NOT _ra_dep_build_type)
  set(_ra_dep_build_type Release)
endif()
list(APPEND _ra_kokkos_opts
     -DCMAKE_BUILD_TYPE=${_ra_dep_build_type}
     -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
     -DCMAKE_CXX_STANDARD=17
     -DKokkos_ENABLE_DEPRECATED_CODE_4=OFF
     -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF)

# Only the BLAS and batched components, and no explicit instantiations: the
# project instantiates the few templates it uses in its own sources.
set(_ra_kk_common
    -DKokkosKernels_ENABLE_ALL_COMPONENTS=OFF
    -DKokkosKernels_ENABLE_COMPONENT_BLAS=ON
    -DKokkosKernels_ENABLE_COMPONENT_BATCHED=ON
    -DKokkosKernels_ADD_DEFAULT_ETI=OFF
    -DKokkosKernels_INST_DOUBLE=OFF -DKokkosKernels_INST_FLOAT=OFF
    -DKokkosKernels_INST_COMPLEX_DOUBLE=OFF -DKokkosKernels_INST_COMPLEX_FLOAT=OFF
    -DKokkosKernels_INST_LAYOUTLEFT=OFF -DKokkosKernels_INST_LAYOUTRIGHT=OFF
    -DKokkosKernels_INST_ORDINAL_INT=OFF -DKokkosKernels_INST_OFFSET_SIZE_T=OFF
    -DKokkosKernels_INST_OFFSET_INT=OFF
    -DKokkosKernels_ENABLE_TPL_BLAS=OFF -DKokkosKernels_ENABLE_TPL_LAPACK=OFF
    -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_EXAMPLES=OFF
    -DKokkosKernels_ENABLE_PERFTESTS=OFF)

# Fetch (copy or download) one archive, check its hash, and build+install it.
function(_ra_build_dependency name version sha256 url patch prefix)
  set(archive "${RA_DEPS_ARCHIVES}/${name}-${version}.tar.gz")
  set(dl "${prefix}/${name}-${version}.tar.gz")
  if(EXISTS "${archive}")
    set(dl "${archive}")
  elseif(NOT EXISTS "${dl}")
    message(STATUS "ra-kokkos: ${archive} not found; downloading ${url}")
    file(DOWNLOAD "${url}" "${dl}" STATUS st TLS_VERIFY ON)
    list(GET st 0 code)
    if(NOT code EQUAL 0)
      file(REMOVE "${dl}")
      message(FATAL_ERROR
        "ra-kokkos: cannot get ${name} ${version}: no archive at ${archive} and the download of ${url} failed (${st}).\n"
        "Point -DRA_DEPS_ARCHIVES=<dir> (or the RA_DEPS_ARCHIVES environment variable) at a folder holding ${name}-${version}.tar.gz, "
        "or install ${name} and pass -DCMAKE_PREFIX_PATH.")
    endif()
  endif()
  file(SHA256 "${dl}" got)
  if(NOT got STREQUAL sha256)
    message(FATAL_ERROR "ra-kokkos: ${dl} has SHA256 ${got}, expected ${sha256}")
  endif()

  file(REMOVE_RECURSE "${prefix}/src" "${prefix}/build")
  file(MAKE_DIRECTORY "${prefix}/src")
  execute_process(COMMAND ${CMAKE_COMMAND} -E tar xzf "${dl}"
                  WORKING_DIRECTORY "${prefix}/src" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ra-kokkos: cannot unpack ${dl}")
  endif()
  file(GLOB top LIST_DIRECTORIES true "${prefix}/src/*")
  foreach(p IN LISTS patch)  # a list: applied in order
    execute_process(COMMAND patch -p1 -N -i "${p}" WORKING_DIRECTORY "${top}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "ra-kokkos: patch ${p} failed on ${name}:\n${out}")
    endif()
  endforeach()

  include(ProcessorCount)
  ProcessorCount(jobs)
  if(jobs EQUAL 0)
    set(jobs 2)
  endif()
  message(STATUS "ra-kokkos: building ${name} ${version} into ${prefix} (once; cached afterwards)")
  string(TIMESTAMP t0 "%s")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S "${top}" -B "${prefix}/build" -G Ninja
            -DCMAKE_INSTALL_PREFIX=${prefix}/install -DCMAKE_INSTALL_LIBDIR=lib ${ARGN}
    RESULT_VARIABLE rc OUTPUT_FILE "${prefix}/configure.log" ERROR_FILE "${prefix}/configure.log")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ra-kokkos: configuring ${name} failed; see ${prefix}/configure.log")
  endif()
  execute_process(
    COMMAND ${CMAKE_COMMAND} --build "${prefix}/build" --target install --parallel ${jobs}
    RESULT_VARIABLE rc OUTPUT_FILE "${prefix}/build.log" ERROR_FILE "${prefix}/build.log")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ra-kokkos: building ${name} failed; see ${prefix}/build.log")
  endif()
  string(TIMESTAMP t1 "%s")
  math(EXPR dt "${t1} - ${t0}")
  message(STATUS "ra-kokkos: ${name} built in ${dt} s")
  file(REMOVE_RECURSE "${prefix}/build" "${prefix}/src")
  file(WRITE "${prefix}/install/.ra-complete" "${version}\n")
endfunction()

# --- Kokkos ---------------------------------------------------------------
# A Kokkos (Kernels) that an earlier configure found in our own cache is not an
# "installed" one: forget it, so that the key below (options, compilers,
# patches) picks the build -- a new patch then rebuilds it.
foreach(_ra_dir Kokkos_DIR KokkosKernels_DIR)
  if(DEFINED ${_ra_dir} AND "${${_ra_dir}}" MATCHES "^${RA_DEPS_CACHE}/")
    unset(${_ra_dir} CACHE)
  endif()
endforeach()
find_package(Kokkos 4.6.1 EXACT QUIET)
if(Kokkos_FOUND)
  message(STATUS "ra-kokkos: using installed Kokkos at ${Kokkos_DIR}")
else()
  # The patches' contents are part of the key: editing one rebuilds Kokkos.
  set(_ra_kokkos_patches "${PROJECT_SOURCE_DIR}/cmake/kokkos-4.6.01-cuda13.patch"
                         "${PROJECT_SOURCE_DIR}/cmake/kokkos-4.6.01-shmem-optin.patch")
  set(_ra_patch_hashes)
  foreach(_ra_p IN LISTS _ra_kokkos_patches)
    file(SHA1 "${_ra_p}" _ra_h)
    list(APPEND _ra_patch_hashes "${_ra_h}")
  endforeach()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_ra_kokkos_patches})
  string(SHA1 _ra_key "kokkos;${RA_KOKKOS_VERSION};${_ra_kokkos_opts};${CMAKE_CXX_COMPILER_VERSION};${CMAKE_CUDA_COMPILER_VERSION};${_ra_patch_hashes}")
  string(SUBSTRING "${_ra_key}" 0 12 _ra_key)
  set(_ra_kokkos_prefix "${RA_DEPS_CACHE}/kokkos-${RA_KOKKOS_VERSION}-${RA_BACKEND}-${_ra_key}")
  if(NOT EXISTS "${_ra_kokkos_prefix}/install/.ra-complete")
    _ra_build_dependency(kokkos ${RA_KOKKOS_VERSION} ${RA_KOKKOS_SHA256}
      "https://github.com/kokkos/kokkos/archive/refs/tags/${RA_KOKKOS_VERSION}.tar.gz"
      "${_ra_kokkos_patches}"
      "${_ra_kokkos_prefix}" ${_ra_kokkos_opts})
  endif()
  find_package(Kokkos 4.6.1 EXACT REQUIRED PATHS "${_ra_kokkos_prefix}/install" NO_DEFAULT_PATH)
  message(STATUS "ra-kokkos: Kokkos from cache ${_ra_kokkos_prefix}")
endif()

# An installed Kokkos must have the backends this preset asks for.
if(RA_BACKEND STREQUAL "cuda" AND NOT "CUDA" IN_LIST Kokkos_DEVICES)
  message(FATAL_ERROR "ra-kokkos: the Kokkos found at ${Kokkos_DIR} has devices '${Kokkos_DEVICES}' but "
                      "RA_BACKEND=cuda needs CUDA. Point CMAKE_PREFIX_PATH elsewhere or unset it to build one.")
endif()
if(RA_BACKEND STREQUAL "host" AND NOT "OPENMP" IN_LIST Kokkos_DEVICES)
  message(FATAL_ERROR "ra-kokkos: the Kokkos found at ${Kokkos_DIR} has devices '${Kokkos_DEVICES}' but "
                      "RA_BACKEND=host needs OPENMP (and SERIAL).")
endif()

# --- Kokkos Kernels ---------------------------------------------------------
find_package(KokkosKernels QUIET)
if(KokkosKernels_FOUND)
  message(STATUS "ra-kokkos: using installed Kokkos Kernels at ${KokkosKernels_DIR}")
else()
  if(NOT _ra_kokkos_prefix)
    get_filename_component(_ra_kokkos_prefix "${Kokkos_DIR}/../../.." ABSOLUTE)
  endif()
  string(SHA1 _ra_key "kk;${RA_KOKKOS_KERNELS_VERSION};${Kokkos_DIR};${_ra_kk_common};${_ra_kk_opts}")
  string(SUBSTRING "${_ra_key}" 0 12 _ra_key)
  set(_ra_kk_prefix "${RA_DEPS_CACHE}/kokkos-kernels-${RA_KOKKOS_KERNELS_VERSION}-${RA_BACKEND}-${_ra_key}")
  if(NOT EXISTS "${_ra_kk_prefix}/install/.ra-complete")
    set(_cuda_opts)
    if(RA_BACKEND STREQUAL "cuda")
      set(_cuda_opts -DCMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES})
    endif()
    _ra_build_dependency(kokkos-kernels ${RA_KOKKOS_KERNELS_VERSION} ${RA_KOKKOS_KERNELS_SHA256}
      "https://github.com/kokkos/kokkos-kernels/archive/refs/tags/${RA_KOKKOS_KERNELS_VERSION}.tar.gz"
      "" "${_ra_kk_prefix}"
      -DKokkos_DIR=${Kokkos_DIR} -DCMAKE_BUILD_TYPE=${_ra_dep_build_type}
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} ${_cuda_opts} ${_ra_kk_common} ${_ra_kk_opts})
  endif()
  find_package(KokkosKernels REQUIRED PATHS "${_ra_kk_prefix}/install" NO_DEFAULT_PATH)
  message(STATUS "ra-kokkos: Kokkos Kernels from cache ${_ra_kk_prefix}")
endif()

# Sources that include Kokkos headers must be compiled by nvcc in CUDA builds.
function(ra_kokkos_sources)
  if(RA_BACKEND STREQUAL "cuda")
    set_source_files_properties(${ARGN} PROPERTIES LANGUAGE CUDA)
  endif()
endfunction()
