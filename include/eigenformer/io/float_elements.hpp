// eigenformer/io/float_elements.hpp — little-endian floating-point elements of a weight file
// (F64, F32, F16, BF16) converted to the library's Scalar. The safetensors and GGUF readers both
// copy their float tensors through convert_float_elements; each maps its own type tag onto a
// float_encoding. Eigen only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

namespace eigenformer {

/// How one float element is stored in a file (always little-endian).
enum class float_encoding { f64, f32, f16, bf16 };

inline std::size_t float_encoding_bytes(float_encoding e) {
  switch (e) {
    case float_encoding::f64:
      return 8;
    case float_encoding::f32:
      return 4;
    default:
      return 2;
  }
}

namespace detail {

/// The readers take file bytes as little-endian numbers as they are; a big-endian host is refused.
inline bool host_is_little_endian() {
  const std::uint16_t probe = 1;
  unsigned char first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

/// Asks the kernel to back [data, data + bytes) with transparent huge pages (where it may):
/// a 124M-parameter model is ~120k 4 KiB pages, and first-touch page faults were most of the
/// load time. Only whole 2 MiB-aligned pages inside the range are advised.
inline void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t(2) << 20;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + huge - 1) & ~(huge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(huge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data, (void)bytes;
#endif
}

/// Element `i` of `data` in encoding `E` (memcpy: the data need not be aligned).
template <class Scalar, float_encoding E>
Scalar load_float_element(const unsigned char* data, std::size_t i) {
  if constexpr (E == float_encoding::f64) {
    double v;
    std::memcpy(&v, data + 8 * i, 8);
    return Scalar(v);
  } else if constexpr (E == float_encoding::f32) {
    float v;
    std::memcpy(&v, data + 4 * i, 4);
    return Scalar(v);
  } else {
    std::uint16_t bits;
    std::memcpy(&bits, data + 2 * i, 2);
    using half_type = std::conditional_t<E == float_encoding::f16, Eigen::half, Eigen::bfloat16>;
    return Scalar(static_cast<float>(Eigen::numext::bit_cast<half_type>(bits)));
  }
}

}  // namespace detail

/// dst[0, n) = the n elements at `src` in encoding `e`, as Scalar. Runs in chunks on all threads:
/// most of the time of a large copy goes to the kernel faulting in the destination pages, and
/// every core can take faults at once.
template <class Scalar>
void convert_float_elements(const unsigned char* src, float_encoding e, Scalar* dst,
                            std::size_t n) {
  detail::advise_huge_pages(dst, n * sizeof(Scalar));
  constexpr std::size_t chunk = std::size_t(1) << 20;  // elements
  const auto n_chunks = static_cast<index_t>((n + chunk - 1) / chunk);
  const auto chunk_range = [&](index_t c) {
    const std::size_t first = static_cast<std::size_t>(c) * chunk;
    return std::pair<std::size_t, std::size_t>(first, std::min(n, first + chunk));
  };
  if ((e == float_encoding::f32 && std::is_same_v<Scalar, float>) ||
      (e == float_encoding::f64 && std::is_same_v<Scalar, double>)) {
    parallel_for(n_chunks, [&](index_t c) {  // same layout: a plain copy
      const auto [first, last] = chunk_range(c);
      std::memcpy(dst + first, src + first * sizeof(Scalar), (last - first) * sizeof(Scalar));
    });
    return;
  }
  // One loop per encoding, so the switch is not inside the element loop.
  const auto convert = [&](auto encoding) {  // std::integral_constant<float_encoding, ...>
    parallel_for(n_chunks, [&](index_t c) {
      const auto [first, last] = chunk_range(c);
      for (std::size_t i = first; i < last; ++i) {
        dst[i] = detail::load_float_element<Scalar, decltype(encoding)::value>(src, i);
      }
    });
  };
  switch (e) {
    case float_encoding::f64:
      convert(std::integral_constant<float_encoding, float_encoding::f64>{});
      break;
    case float_encoding::f32:
      convert(std::integral_constant<float_encoding, float_encoding::f32>{});
      break;
    case float_encoding::f16:
      convert(std::integral_constant<float_encoding, float_encoding::f16>{});
      break;
    case float_encoding::bf16:
      convert(std::integral_constant<float_encoding, float_encoding::bf16>{});
      break;
  }
}

}  // namespace eigenformer
