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
