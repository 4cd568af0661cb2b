# Installs bg_jobs into a scratch prefix, checks that exactly the public
# headers were installed, builds a separate project against it with
# find_package(bg_jobs) (each public header compiled on its own, with the
# compiler's default standard), and runs that project's program.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")

set(include_dir "${WORK_DIR}/prefix/include/bg_jobs")
file(GLOB_RECURSE installed RELATIVE "${include_dir}" "${include_dir}/*")
list(SORT installed)
string(REPLACE "," ";" expected "${PUBLIC_HEADERS}")
list(SORT expected)
if(NOT installed STREQUAL expected)
  message(FATAL_ERROR "installed headers differ from the public API:\n"
                      "installed: ${installed}\nexpected: ${expected}")
endif()
foreach(header ${installed})
  if(header MATCHES "(^|/)detail/")
    message(FATAL_ERROR "an internal header was installed: ${header}")
  endif()
endforeach()

run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build"
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
    "-DBG_JOBS_HEADERS=${PUBLIC_HEADERS}")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j2)
run("${WORK_DIR}/build/consumer" "${WORK_DIR}/jobs.db")
run("${WORK_DIR}/build/testing_consumer")
execute_process(COMMAND ldd "${WORK_DIR}/build/consumer_shared"
  OUTPUT_VARIABLE libs)
if(NOT libs MATCHES "libbg_jobs\\.so")
  message(FATAL_ERROR "bg_jobs::shared does not link libbg_jobs.so:\n${libs}")
endif()
set(ENV{LD_LIBRARY_PATH} "${WORK_DIR}/prefix/lib")
run("${WORK_DIR}/build/consumer_shared" "${WORK_DIR}/jobs_shared.db")
unset(ENV{LD_LIBRARY_PATH})

# Without CMake: pkg-config's flags build the same program against the
# shared library, which it then runs with.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${WORK_DIR}/prefix/lib/pkgconfig")
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs bg_jobs
  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know bg_jobs")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(c++ "${SOURCE_DIR}/main.cpp" -o "${WORK_DIR}/consumer_pc" ${flags})
execute_process(COMMAND ldd "${WORK_DIR}/consumer_pc" OUTPUT_VARIABLE libs)
if(NOT libs MATCHES "libbg_jobs\\.so")
  message(FATAL_ERROR "the pkg-config build does not use libbg_jobs.so:\n${libs}")
endif()
set(ENV{LD_LIBRARY_PATH} "${WORK_DIR}/prefix/lib")
run("${WORK_DIR}/consumer_pc" "${WORK_DIR}/jobs_pc.db")

# The Debian package holds the libraries, the headers, the CMake and
# pkg-config files and the command line.
run(${CMAKE_COMMAND} -E chdir "${BUILD_DIR}"
    cpack -G DEB -B "${WORK_DIR}/package")
file(GLOB debs "${WORK_DIR}/package/*.deb")
list(LENGTH debs n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one .deb, got: ${debs}")
endif()
execute_process(COMMAND dpkg-deb --contents ${debs} OUTPUT_VARIABLE contents
  RESULT_VARIABLE rc)
execute_process(COMMAND dpkg-deb --field ${debs} Package Depends
  OUTPUT_VARIABLE fields)
foreach(want "lib/libbg_jobs.a" "lib/libbg_jobs.so" "lib/pkgconfig/bg_jobs.pc"
        "lib/cmake/bg_jobs/bg_jobsConfig.cmake"
        "include/bg_jobs/actors/builder.hpp" "bin/bg_jobs" "Package: libbg-jobs-dev"
        "Depends: libcaf-dev")
  if(NOT "${contents}${fields}" MATCHES "${want}")
    message(FATAL_ERROR "the package lacks ${want}:\n${contents}\n${fields}")
  endif()
endforeach()
# A consumer builds against the package's files, unpacked.
run(dpkg-deb -x ${debs} "${WORK_DIR}/unpacked")
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build_deb"
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/unpacked/usr -DCMAKE_BUILD_TYPE=Release
    "-DBG_JOBS_HEADERS=${PUBLIC_HEADERS}")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build_deb" -j2 --target consumer)
run("${WORK_DIR}/build_deb/consumer" "${WORK_DIR}/jobs_deb.db")
message(STATUS "package: ${debs}")
