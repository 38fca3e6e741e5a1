# End-to-end tests of the `eigenformer` program, driven by tests/test_cli.py (Python 3 with
# numpy, Debian: python3-numpy; numpy.load reads the .npy files the program writes).
find_program(EIGENFORMER_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EIGENFORMER_PYTHON)
  find_program(EIGENFORMER_PYTHON NAMES python3 REQUIRED)
endif()
add_test(NAME cli COMMAND ${EIGENFORMER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.py
                          $<TARGET_FILE:eigenformer_cli> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)

# `eigenformer train`: the Llama family read back by an independent numpy reader, fine-tuning with
# a real tokenizer.json, and runs killed at random moments resumed bit-identical.
add_test(NAME train COMMAND ${EIGENFORMER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_train.py
                            $<TARGET_FILE:eigenformer_cli> ${CMAKE_CURRENT_SOURCE_DIR}/npm/node_modules)
set_tests_properties(train PROPERTIES TIMEOUT 900)
if(EIGENFORMER_SANITIZE)
  set_tests_properties(train PROPERTIES ENVIRONMENT EIGENFORMER_SANITIZED=1)
endif()

# `mpirun -np 2 / 4 eigenformer train` against one process (built with MPI only; serial: it
# starts several processes and times a signal).
if(EIGENFORMER_CLI_HAS_MPI)
  find_program(EIGENFORMER_MPIRUN NAMES mpirun)
  if(EIGENFORMER_MPIRUN)
    add_test(NAME mpi COMMAND ${EIGENFORMER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_mpi.py
                              $<TARGET_FILE:eigenformer_cli> ${EIGENFORMER_MPIRUN})
    set_tests_properties(mpi PROPERTIES TIMEOUT 900 RUN_SERIAL TRUE)
  endif()
endif()

# `eigenformer serve` over HTTP on 127.0.0.1 (built with cpp-httplib only): Python's own HTTP
# client, 32 concurrent clients, faults, memory, signals.
if(HTTPLIB_FOUND)
  add_test(NAME server COMMAND ${EIGENFORMER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_server.py
                               $<TARGET_FILE:eigenformer_cli> ${CMAKE_CURRENT_SOURCE_DIR}/npm/node_modules)
  set_tests_properties(server PROPERTIES TIMEOUT 600)
  if(EIGENFORMER_SANITIZE)
    set_tests_properties(server PROPERTIES ENVIRONMENT EIGENFORMER_SANITIZED=1)
  endif()
endif()
