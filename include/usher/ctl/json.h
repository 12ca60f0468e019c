// JSON for usherctl: a small writer for --json output and a parser for backup manifests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/base/result.h"

namespace usher::ctl {

// `s` as a JSON string literal, quotes included (UTF-8 passed through, control bytes escaped).
std::string jsonQuote(std::string_view s);

// Builds compact JSON in document order. The caller keeps begin/end balanced; key() precedes
// every value inside an object.
class JsonWriter {
 public:
  JsonWriter& beginObject() { return open('{'); }
  JsonWriter& endObject() { return close('}'); }
  JsonWriter& beginArray() { return open('['); }
  JsonWriter& endArray() { return close(']'); }
  JsonWriter& key(std::string_view k);
  JsonWriter& value(std::string_view v);
  JsonWriter& value(const char* v) { return value(std::string_view(v)); }
  JsonWriter& value(const std::string& v) { return value(std::string_view(v)); }
  JsonWriter& value(int64_t v);
  JsonWriter& value(int v) { return value(int64_t(v)); }
  JsonWriter& value(double v);
  JsonWriter& value(bool v);
  JsonWriter& null();
  // Shorthands for key(k).value(v).
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }
  const std::string& str() const { return out_; }

 private:
  JsonWriter& open(char c);
  JsonWriter& close(char c);
  void separate();
  std::string out_;
  std::vector<bool> hasItems_;  // per open container: whether a value was written
  bool afterKey_ = false;
};

// A parsed JSON value. Numbers keep their text so 64-bit sizes survive exactly.
struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  std::string text;  // String: the decoded string; Number: the literal
  std::vector<JsonValue> items;
  std::vector<std::pair<std::string, JsonValue>> members;

  const JsonValue* get(std::string_view name) const;  // Object member or nullptr
  std::optional<std::string> getString(std::string_view name) const;
  std::optional<int64_t> getInt(std::string_view name) const;
  std::optional<double> getNumber(std::string_view name) const;
  std::optional<bool> getBool(std::string_view name) const;
};

// Parses one JSON document (RFC 8259; nesting limited to 64 levels). Errors give the offset.
Result<JsonValue> parseJson(std::string_view text);

}  // namespace usher::ctl
