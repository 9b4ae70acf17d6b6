#include "nearest.h"

#include "checks.h"

namespace skipgan {

void nearest_distances_check(const char* op, const at::Tensor& queries, const at::Tensor& memory,
                             const at::Tensor& memory_sq, int64_t query_block, int64_t memory_block) {
  check_defined(queries, op, "queries");
  check_defined(memory, op, "memory");
  check_defined(memory_sq, op, "memory_sq");
  check_dim(queries, op, "queries", 2);
  check_dim(memory, op, "memory", 2);
  check_dim(memory_sq, op, "memory_sq", 1);
  check_dtype(queries, op, "queries", at::kFloat);
  check_dtype(memory, op, "memory", at::kFloat);
  check_dtype(memory_sq, op, "memory_sq", at::kFloat);
  TORCH_CHECK(memory.size(0) >= 1, op, ": memory: expected at least one row, got shape ", memory.sizes());
  TORCH_CHECK(memory.size(1) == queries.size(1), op, ": memory: expected ", queries.size(1),
              " columns (the queries' width), got shape ", memory.sizes());
  TORCH_CHECK(memory_sq.size(0) == memory.size(0), op, ": memory_sq: expected shape [", memory.size(0),
              "] (one squared norm per memory row), got ", memory_sq.sizes());
  TORCH_CHECK(queries.device() == memory.device() && memory.device() == memory_sq.device(), op,
              ": queries, memory and memory_sq: expected one device, got ", queries.device(), ", ", memory.device(),
              ", ", memory_sq.device());
  TORCH_CHECK(query_block >= 1 && memory_block >= 1, op, ": query_block, memory_block: expected >= 1, got ",
              query_block, ", ", memory_block);
}

}  // namespace skipgan
