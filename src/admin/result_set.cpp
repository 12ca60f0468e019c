// ResultSet: RowDescription / DataRow / CommandComplete for console answers.
#include "usher/admin/result_set.h"

#include <ctime>

#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace usher::admin {

ResultSet::ResultSet(IoBuffer& out, std::initializer_list<Column> columns) : out_(out) {
  describe(columns.begin(), columns.end());
}

ResultSet::ResultSet(IoBuffer& out, const std::vector<Column>& columns) : out_(out) {
  describe(columns.data(), columns.data() + columns.size());
}

void ResultSet::describe(const Column* begin, const Column* end) {
  columns_ = size_t(end - begin);
  protocol::MessageWriter w(out_);
  w.begin(protocol::be::kRowDescription).i16(int16_t(columns_));
  for (auto* c = begin; c != end; ++c) {
    int16_t size = c->typeOid == oid::kInt8   ? 8
                   : c->typeOid == oid::kInt4 ? 4
                   : c->typeOid == oid::kBool ? 1
                                              : -1;
    w.cstr(c->name).i32(0).i16(0).i32(int32_t(c->typeOid)).i16(size).i32(-1).i16(0);
  }
  w.end();
}

void ResultSet::row(std::initializer_list<std::optional<std::string>> values) {
  row(std::vector<std::optional<std::string>>(values));
}

namespace {
void writeRow(IoBuffer& out, const std::vector<std::optional<std::string>>& values) {
  protocol::MessageWriter w(out);
  w.begin(protocol::be::kDataRow).i16(int16_t(values.size()));
  for (const auto& v : values) {
    if (!v)
      w.i32(-1);
    else
      w.i32(int32_t(v->size())).raw(*v);
  }
  w.end();
}
}  // namespace

void ResultSet::row(const std::vector<std::optional<std::string>>& values) {
  writeRow(out_, values);
  ++rows_;
}

void ResultSet::writeRows(IoBuffer& out,
                          const std::vector<std::vector<std::optional<std::string>>>& rows) {
  for (const auto& values : rows) writeRow(out, values);
}

void ResultSet::finish(std::string_view tag) {
  protocol::MessageWriter w(out_);
  w.begin(protocol::be::kCommandComplete).cstr(tag).end();
}

std::string num(uint64_t v) {
  return std::to_string(v);
}
std::string num(int64_t v) {
  return std::to_string(v);
}
std::string num(int v) {
  return std::to_string(v);
}

std::string timestamp(int64_t unixSeconds) {
  std::time_t t = std::time_t(unixSeconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace usher::admin
