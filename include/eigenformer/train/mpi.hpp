// eigenformer/train/mpi.hpp — data-parallel training over MPI (OpenMPI from Debian:
// libopenmpi-dev, openmpi-bin). Requires MPI in addition to Eigen; the rest of the library never
// includes it.
//
// `mpirun -np R program ...`: every rank runs the same trainer on its share of the global batch
// (train/trainer.hpp), and the gradients are summed with MPI_Allreduce. With two ranks the sum of
// two values is the same whichever rank adds (a + b = b + a); with more, MPI's reduction order is
// fixed for a given R and message, and every rank receives the same result, so the ranks never
// drift apart.
#pragma once

#include <mpi.h>

#include <cstdlib>
#include <string>

#include "eigenformer/core/error.hpp"
#include "eigenformer/train/trainer.hpp"

namespace eigenformer {

/// MPI_Init on construction (unless already initialised), MPI_Finalize on destruction. A rank
/// that fails must call abort() so that the others do not wait for it forever.
class mpi_session {
 public:
  mpi_session(int* argc = nullptr, char*** argv = nullptr) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      if (MPI_Init(argc, argv) != MPI_SUCCESS) throw error("MPI_Init failed");
      owner_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() {
    if (owner_) MPI_Finalize();
  }

  int rank() const { return rank_; }
  int world() const { return world_; }

  /// The trainer's communicator: in-place sums over MPI_COMM_WORLD.
  gradient_communicator communicator() const {
    gradient_communicator c;
    c.rank = rank_, c.world = world_;
    c.sum_float = [](float* data, index_t n) { sum(data, n, MPI_FLOAT); };
    c.sum_double = [](double* data, index_t n) { sum(data, n, MPI_DOUBLE); };
    return c;
  }

  /// Whether any rank says yes (a stop signal may reach the ranks at different steps; they must
  /// stop at the same one).
  bool any(bool mine) const {
    int value = mine ? 1 : 0, result = 0;
    MPI_Allreduce(&value, &result, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return result != 0;
  }

  /// Ends every rank (after an error on this one).
  [[noreturn]] static void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  static void sum(void* data, index_t n, MPI_Datatype type) {
    constexpr index_t max_count = index_t(1) << 30;  // MPI counts are int
    auto* bytes = static_cast<char*>(data);
    int size = 0;
    MPI_Type_size(type, &size);
    for (index_t first = 0; first < n; first += max_count) {
      const int count = int(std::min(max_count, n - first));
      if (MPI_Allreduce(MPI_IN_PLACE, bytes + first * size, count, type, MPI_SUM,
                        MPI_COMM_WORLD) != MPI_SUCCESS) {
        throw error("MPI_Allreduce failed");
      }
    }
  }

  bool owner_ = false;
  int rank_ = 0, world_ = 1;
};

}  // namespace eigenformer
