// JSON writer for --json output and a strict parser for backup manifests.
#include "usher/ctl/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace usher::ctl {

std::string jsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

void JsonWriter::separate() {
  if (afterKey_) {
    afterKey_ = false;
    return;
  }
  if (!hasItems_.empty()) {
    if (hasItems_.back()) out_.push_back(',');
    hasItems_.back() = true;
  }
}

JsonWriter& JsonWriter::open(char c) {
  separate();
  out_.push_back(c);
  hasItems_.push_back(false);
  return *this;
}

JsonWriter& JsonWriter::close(char c) {
  out_.push_back(c);
  if (!hasItems_.empty()) hasItems_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view k) {
  separate();
  out_ += jsonQuote(k);
  out_.push_back(':');
  afterKey_ = true;
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view v) {
  separate();
  out_ += jsonQuote(v);
  return *this;
}

JsonWriter& JsonWriter::value(int64_t v) {
  separate();
  out_ += std::to_string(v);
  return *this;
}

JsonWriter& JsonWriter::value(double v) {
  separate();
  if (!std::isfinite(v)) {
    out_ += "null";
    return *this;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  out_ += buf;
  return *this;
}

JsonWriter& JsonWriter::value(bool v) {
  separate();
  out_ += v ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::null() {
  separate();
  out_ += "null";
  return *this;
}

// ---- parsing ----

const JsonValue* JsonValue::get(std::string_view name) const {
  if (kind != Kind::Object) return nullptr;
  for (const auto& [k, v] : members) {
    if (k == name) return &v;
  }
  return nullptr;
}

std::optional<std::string> JsonValue::getString(std::string_view name) const {
  const JsonValue* v = get(name);
  if (!v || v->kind != Kind::String) return std::nullopt;
  return v->text;
}

std::optional<int64_t> JsonValue::getInt(std::string_view name) const {
  const JsonValue* v = get(name);
  if (!v || v->kind != Kind::Number) return std::nullopt;
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v->text.data(), v->text.data() + v->text.size(), out);
  if (ec != std::errc() || end != v->text.data() + v->text.size()) return std::nullopt;
  return out;
}

std::optional<double> JsonValue::getNumber(std::string_view name) const {
  const JsonValue* v = get(name);
  if (!v || v->kind != Kind::Number) return std::nullopt;
  return std::strtod(v->text.c_str(), nullptr);
}

std::optional<bool> JsonValue::getBool(std::string_view name) const {
  const JsonValue* v = get(name);
  if (!v || v->kind != Kind::Bool) return std::nullopt;
  return v->boolean;
}

namespace {

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  Result<JsonValue> document() {
    auto v = value(0);
    if (!v) return v;
    skipSpace();
    if (pos_ != t_.size()) return error("unexpected text after the value");
    return v;
  }

 private:
  std::unexpected<Error> error(const std::string& what) const {
    return failPlain("invalid JSON at offset " + std::to_string(pos_) + ": " + what);
  }
  void skipSpace() {
    while (pos_ < t_.size() &&
           (t_[pos_] == ' ' || t_[pos_] == '\n' || t_[pos_] == '\r' || t_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (t_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Result<JsonValue> value(int depth) {
    if (depth > 64) return error("nested too deeply");
    skipSpace();
    if (pos_ >= t_.size()) return error("unexpected end");
    JsonValue v;
    char c = t_[pos_];
    if (c == '{') {
      v.kind = JsonValue::Kind::Object;
      ++pos_;
      skipSpace();
      if (pos_ < t_.size() && t_[pos_] == '}') {
        ++pos_;
        return v;
      }
      while (true) {
        skipSpace();
        auto k = string();
        if (!k) return std::unexpected(k.error());
        skipSpace();
        if (pos_ >= t_.size() || t_[pos_] != ':') return error("expected ':'");
        ++pos_;
        auto member = value(depth + 1);
        if (!member) return member;
        v.members.emplace_back(std::move(*k), std::move(*member));
        skipSpace();
        if (pos_ < t_.size() && t_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < t_.size() && t_[pos_] == '}') {
          ++pos_;
          return v;
        }
        return error("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = JsonValue::Kind::Array;
      ++pos_;
      skipSpace();
      if (pos_ < t_.size() && t_[pos_] == ']') {
        ++pos_;
        return v;
      }
      while (true) {
        auto item = value(depth + 1);
        if (!item) return item;
        v.items.push_back(std::move(*item));
        skipSpace();
        if (pos_ < t_.size() && t_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < t_.size() && t_[pos_] == ']') {
          ++pos_;
          return v;
        }
        return error("expected ',' or ']'");
      }
    }
    if (c == '"') {
      auto s = string();
      if (!s) return std::unexpected(s.error());
      v.kind = JsonValue::Kind::String;
      v.text = std::move(*s);
      return v;
    }
    if (literal("true")) {
      v.kind = JsonValue::Kind::Bool;
      v.boolean = true;
      return v;
    }
    if (literal("false")) {
      v.kind = JsonValue::Kind::Bool;
      return v;
    }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = pos_;
      if (t_[pos_] == '-') ++pos_;
      bool digits = false;
      while (pos_ < t_.size() &&
             std::string_view("0123456789.eE+-").find(t_[pos_]) != std::string_view::npos) {
        digits = digits || (t_[pos_] >= '0' && t_[pos_] <= '9');
        ++pos_;
      }
      if (!digits) return error("malformed number");
      v.kind = JsonValue::Kind::Number;
      v.text = std::string(t_.substr(start, pos_ - start));
      return v;
    }
    return error(std::string("unexpected character '") + c + "'");
  }

  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(char(cp));
    } else if (cp < 0x800) {
      out.push_back(char(0xC0 | (cp >> 6)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(char(0xE0 | (cp >> 12)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(char(0xF0 | (cp >> 18)));
      out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    }
  }

  Result<uint32_t> hex4() {
    if (pos_ + 4 > t_.size()) return error("short \\u escape");
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(t_.data() + pos_, t_.data() + pos_ + 4, v, 16);
    if (ec != std::errc() || end != t_.data() + pos_ + 4) return error("bad \\u escape");
    pos_ += 4;
    return v;
  }

  Result<std::string> string() {
    if (pos_ >= t_.size() || t_[pos_] != '"') return error("expected a string");
    ++pos_;
    std::string out;
    while (pos_ < t_.size()) {
      char c = t_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return error("control character in string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= t_.size()) break;
      char e = t_[pos_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          auto cp = hex4();
          if (!cp) return std::unexpected(cp.error());
          uint32_t code = *cp;
          if (code >= 0xD800 && code < 0xDC00 && t_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            auto low = hex4();
            if (!low) return std::unexpected(low.error());
            code = 0x10000 + ((code - 0xD800) << 10) + (*low - 0xDC00);
          }
          appendUtf8(out, code);
          break;
        }
        default:
          return error("bad escape");
      }
    }
    return error("unterminated string");
  }

  std::string_view t_;
  size_t pos_ = 0;
};

}  // namespace

Result<JsonValue> parseJson(std::string_view text) {
  return Parser(text).document();
}

}  // namespace usher::ctl
