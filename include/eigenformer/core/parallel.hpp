// eigenformer/core/parallel.hpp — the library's threading: OpenMP when compiled with -fopenmp,
// serial otherwise.
//
// Work is split into fixed-size blocks of OUTPUT columns (or heads, or rows), never over a
// reduction, and the block size does not depend on the thread count: every output element is
// computed by the same operations in the same order whatever the number of threads, so results
// are bit-identical for 1, 2 or 64 threads. For the same reason Eigen's own GEMM threading is off
// (EIGEN_DONT_PARALLELIZE, set by the CMake target): its blocking depends on the thread count.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Threads a parallel region will use (OMP_NUM_THREADS, or the last set_num_threads()).
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the thread count for the calling thread's later parallel regions (n >= 1).
inline void set_num_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n < 1 ? 1 : n);
#else
  (void)n;
#endif
}

/// Runs body(block) for block in [0, n_blocks), in parallel; blocks are handed out dynamically.
template <class Body>
void parallel_for(index_t n_blocks, const Body& body) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (n_blocks > 1)
#endif
  for (index_t block = 0; block < n_blocks; ++block) body(block);
}

}  // namespace eigenformer
