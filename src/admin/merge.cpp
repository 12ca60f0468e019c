// Merging console results from several workers: decode each part's rows, combine by key, write.
#include "usher/admin/merge.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include "usher/admin/result_set.h"
#include "usher/base/byte_reader.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace usher::admin {
namespace {

using Row = std::vector<std::optional<std::string>>;

struct Part {
  std::string_view description;  // the RowDescription payload
  std::vector<std::string> names;
  std::vector<uint32_t> types;
  std::vector<Row> rows;
  std::string tag;
};

bool decode(std::string_view bytes, Part& part) {
  ByteReader r(bytes);
  while (r.ok() && r.remaining() > 0) {
    char tag = char(r.u8());
    int32_t len = r.i32();
    if (!r.ok() || len < 4 || size_t(len - 4) > r.remaining()) return false;
    std::string_view payload = r.bytes(size_t(len - 4));
    ByteReader m(payload);
    if (tag == protocol::be::kRowDescription) {
      part.description = payload;
      int16_t n = m.i16();
      for (int i = 0; i < n && m.ok(); ++i) {
        part.names.emplace_back(m.cstr());
        m.i32();
        m.i16();
        part.types.push_back(uint32_t(m.i32()));
        m.i16();
        m.i32();
        m.i16();
      }
    } else if (tag == protocol::be::kDataRow) {
      Row row;
      int16_t n = m.i16();
      for (int i = 0; i < n && m.ok(); ++i) {
        int32_t size = m.i32();
        if (size < 0)
          row.emplace_back(std::nullopt);
        else
          row.emplace_back(std::string(m.bytes(size_t(size))));
      }
      part.rows.push_back(std::move(row));
    } else if (tag == protocol::be::kCommandComplete) {
      part.tag = std::string(m.cstr());
    }
    if (!m.ok()) return false;
  }
  return r.ok();
}

std::optional<int64_t> number(const std::optional<std::string>& v) {
  if (!v || v->empty()) return std::nullopt;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size()) return std::nullopt;
  return n;
}

bool listed(const std::vector<std::string_view>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

bool numericType(uint32_t type) {
  return type == oid::kInt4 || type == oid::kInt8 || type == oid::kNumeric;
}

}  // namespace

bool spansWorkers(std::string_view what) {
  static constexpr std::string_view kSpanning[] = {
      "POOLS",   "STATS",          "STATS_TOTALS", "STATS_AVERAGES", "TOTALS", "CLIENTS", "SERVERS",
      "SOCKETS", "ACTIVE_SOCKETS", "DATABASES",    "USERS",          "LISTS",  "MEM"};
  return std::find(std::begin(kSpanning), std::end(kSpanning), what) != std::end(kSpanning);
}

MergeRule mergeRuleFor(std::string_view what) {
  MergeRule r;
  if (what == "POOLS") {
    r.keyColumns = 2;
    r.longest = {"maxwait", "maxwait_us"};
  } else if (what == "STATS" || what == "STATS_TOTALS") {
    r.keyColumns = 1;
    r.weighted = {{"avg_xact_time", "avg_xact_count"},
                  {"avg_query_time", "avg_query_count"},
                  {"avg_wait_time", "avg_server_assignment_count"}};
  } else if (what == "STATS_AVERAGES") {
    r.keyColumns = 1;
    r.weighted = {{"xact_time", "xact_count"},
                  {"query_time", "query_count"},
                  {"wait_time", "server_assignment_count"}};
  } else if (what == "TOTALS") {
    r.keyColumns = 1;
    r.weightedRows = {{"avg_xact_time", "avg_xact_count"},
                      {"avg_query_time", "avg_query_count"},
                      {"avg_wait_time", "avg_server_assignment_count"}};
  } else if (what == "DATABASES") {
    r.keyColumns = 1;
    r.first = {"port",
               "pool_size",
               "min_pool_size",
               "reserve_pool_size",
               "server_lifetime",
               "max_connections",
               "max_client_connections"};
    r.max = {"paused", "disabled"};
  } else if (what == "USERS") {
    r.keyColumns = 1;
    r.first = {"max_user_connections", "max_user_client_connections"};
  } else if (what == "LISTS") {
    r.keyColumns = 1;
    // Settings and process-wide counts: every worker reports the same number.
    r.firstRows = {"databases", "users",     "peers",       "pools",      "peer_pools",
                   "dns_names", "dns_zones", "dns_queries", "dns_pending"};
  } else if (what == "MEM") {
    r.keyColumns = 1;
    r.first = {"size"};
  }
  return r;
}

void mergeResults(const std::vector<std::string>& raw, const MergeRule& rule, IoBuffer& out) {
  std::vector<Part> parts;
  for (const auto& bytes : raw) {
    if (bytes.empty()) continue;
    Part p;
    if (decode(bytes, p) && !p.description.empty()) parts.push_back(std::move(p));
  }
  if (parts.empty()) return;
  const Part& head = parts.front();
  size_t columns = head.names.size();
  auto column = [&](std::string_view name) -> std::optional<size_t> {
    for (size_t i = 0; i < columns; ++i)
      if (head.names[i] == name) return i;
    return std::nullopt;
  };

  std::vector<Row> rows;
  std::map<std::vector<std::optional<std::string>>, size_t> byKey;
  // Per merged row and weighted column: sum of mean × weight, sum of weights.
  std::map<std::pair<size_t, size_t>, std::pair<double, double>> means;
  auto accumulateMean = [&](size_t row, size_t col, const Row& incoming, size_t weightCol) {
    auto mean = number(incoming[col]), weight = number(incoming[weightCol]);
    auto& [sum, weights] = means[{row, col}];
    if (mean && weight) {
      sum += double(*mean) * double(*weight);
      weights += double(*weight);
    }
  };

  for (const Part& part : parts) {
    if (part.names.size() != columns) continue;
    // TOTALS-style weights: the value of another row of the same part.
    std::map<std::string, int64_t> rowValues;
    if (!rule.weightedRows.empty())
      for (const Row& row : part.rows)
        if (row.size() == 2 && row[0])
          if (auto v = number(row[1])) rowValues[*row[0]] = *v;
    for (const Row& row : part.rows) {
      if (row.size() != columns) continue;
      if (rule.keyColumns == 0) {
        rows.push_back(row);
        continue;
      }
      Row key(row.begin(), row.begin() + long(std::min(rule.keyColumns, columns)));
      auto [it, fresh] = byKey.emplace(key, rows.size());
      size_t index = it->second;
      if (fresh) rows.push_back(row);
      Row& merged = rows[index];
      for (size_t c = rule.keyColumns; c < columns; ++c) {
        std::string_view name = head.names[c];
        bool isWeighted = false;
        for (const auto& [meanName, weightName] : rule.weighted)
          if (name == meanName)
            if (auto wc = column(weightName)) {
              accumulateMean(index, c, row, *wc);
              isWeighted = true;
            }
        if (isWeighted || fresh) continue;
        if (listed(rule.first, name) || !numericType(head.types[c])) continue;
        if (name == rule.longest.first || name == rule.longest.second) continue;
        if (row[0] && listed(rule.firstRows, *row[0])) continue;
        auto a = number(merged[c]), b = number(row[c]);
        if (!a || !b) continue;
        merged[c] = std::to_string(listed(rule.max, name) ? std::max(*a, *b) : *a + *b);
      }
      // TOTALS: rows holding a mean, weighted by another row's value.
      if (row.size() == 2 && row[0]) {
        for (const auto& [meanRow, weightRow] : rule.weightedRows) {
          if (*row[0] != meanRow) continue;
          auto mean = number(row[1]);
          auto w = rowValues.find(std::string(weightRow));
          auto& [sum, weights] = means[{index, 1}];
          if (mean && w != rowValues.end()) {
            sum += double(*mean) * double(w->second);
            weights += double(w->second);
          }
        }
      }
      if (!rule.longest.first.empty() && !fresh) {
        auto s = column(rule.longest.first), us = column(rule.longest.second);
        if (s && us) {
          auto total = [&](const Row& r) {
            return number(r[*s]).value_or(0) * 1000000 + number(r[*us]).value_or(0);
          };
          int64_t longest = std::max(total(merged), total(row));
          merged[*s] = std::to_string(longest / 1000000);
          merged[*us] = std::to_string(longest % 1000000);
        }
      }
    }
  }
  for (const auto& [where, acc] : means) {
    const auto& [sum, weights] = acc;
    if (weights > 0) rows[where.first][where.second] = std::to_string(int64_t(sum / weights));
  }

  protocol::MessageWriter(out).begin(protocol::be::kRowDescription).raw(head.description).end();
  ResultSet::writeRows(out, rows);
  protocol::MessageWriter(out).begin(protocol::be::kCommandComplete).cstr(head.tag).end();
}

}  // namespace usher::admin
