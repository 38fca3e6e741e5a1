# End-to-end tests of the `eigenformer` program, driven by tests/test_cli.py (Python 3 with
# numpy, Debian: python3-numpy; numpy.load reads the .npy files the program writes).
find_program(EIGENFORMER_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EIGENFORMER_PYTHON)
  find_program(EIGENFORMER_PYTHON NAMES python3 REQUIRED)
endif()
add_test(NAME cli COMMAND ${EIGENFORMER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.py
                          $<TARGET_FILE:eigenformer_cli> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
