// ResultSet: writes a simple-query result (RowDescription, DataRows, CommandComplete) the way
// PgBouncer's console does: every value is sent as text, the column types say how to read it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "usher/base/io_buffer.h"

namespace usher::admin {

namespace oid {
constexpr uint32_t kBool = 16;
constexpr uint32_t kInt8 = 20;
constexpr uint32_t kInt4 = 23;
constexpr uint32_t kText = 25;
constexpr uint32_t kTimestampTz = 1184;
constexpr uint32_t kNumeric = 1700;
}  // namespace oid

struct Column {
  std::string_view name;
  uint32_t typeOid;
};

class ResultSet {
 public:
  ResultSet(IoBuffer& out, std::initializer_list<Column> columns);
  ResultSet(IoBuffer& out, const std::vector<Column>& columns);

  // One row: values in column order; nullopt is SQL NULL.
  void row(std::initializer_list<std::optional<std::string>> values);
  void row(const std::vector<std::optional<std::string>>& values);
  size_t rows() const { return rows_; }
  // CommandComplete with `tag` (PgBouncer's console answers "SHOW").
  void finish(std::string_view tag = "SHOW");
  // DataRow messages alone (for results merged from several workers).
  static void writeRows(IoBuffer& out,
                        const std::vector<std::vector<std::optional<std::string>>>& rows);

 private:
  void describe(const Column* begin, const Column* end);
  IoBuffer& out_;
  size_t columns_ = 0;
  size_t rows_ = 0;
};

// Text forms of values, as PgBouncer prints them.
std::string num(uint64_t v);
std::string num(int64_t v);
std::string num(int v);
// "2026-11-23 13:45:01 UTC"-style timestamp of a wall-clock time in seconds.
std::string timestamp(int64_t unixSeconds);

}  // namespace usher::admin
