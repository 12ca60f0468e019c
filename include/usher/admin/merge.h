// Console answers gathered from several workers. Each worker answers a SHOW command from its own
// sessions and pools, as a complete result (RowDescription, DataRows, CommandComplete); the
// parts are merged into the one result the console client gets.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/base/io_buffer.h"

namespace usher::admin {

struct MergeRule {
  // Rows with equal first `keyColumns` values are one row (0: rows are concatenated).
  size_t keyColumns = 0;
  // Columns combined other than by summing (numeric columns are summed, text columns are taken
  // from the first part that has the row).
  std::vector<std::string_view> first;  // the same on every worker (settings)
  std::vector<std::string_view> max;    // flags
  // A mean, weighted by a count column of the same row (SHOW STATS avg_xact_time).
  std::vector<std::pair<std::string_view, std::string_view>> weighted;
  // A mean in a `value` column, weighted by another row's value (SHOW TOTALS).
  std::vector<std::pair<std::string_view, std::string_view>> weightedRows;
  // Rows (by their first column) whose values are the same on every worker.
  std::vector<std::string_view> firstRows;
  // Seconds and microseconds of one duration: the longest is kept (SHOW POOLS maxwait).
  std::pair<std::string_view, std::string_view> longest;
};

// The SHOW commands whose answer depends on each worker's sessions, and how to merge them.
bool spansWorkers(std::string_view what);
MergeRule mergeRuleFor(std::string_view what);

// Writes the merged result. Parts that are empty (a worker that had stopped) are skipped.
void mergeResults(const std::vector<std::string>& parts, const MergeRule& rule, IoBuffer& out);

}  // namespace usher::admin
