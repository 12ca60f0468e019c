// Comparing and quoting session parameter values, so the pooler only sends SET when the value
// the client expects really differs from the server's.
#include "usher/protocol/params.h"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

namespace usher::protocol {
namespace {

char toLower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}
bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool isAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// PostgreSQL's clean_encoding_name(): only alphanumerics count, case-insensitively, so
// "ISO-8859-1", "iso_8859_1" and "Iso88591" are one name.
std::string cleanEncodingName(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (isAlnum(c)) out.push_back(toLower(c));
  }
  return out;
}

// The aliases of PostgreSQL's pg_encname_tbl (src/common/encnames.c), mapped to the official
// name. Names not listed compare by their cleaned form.
constexpr std::pair<std::string_view, std::string_view> kEncodingAliases[] = {
    {"abc", "win1258"},
    {"alt", "win866"},
    {"big5", "big5"},
    {"euccn", "euc_cn"},
    {"eucjis2004", "euc_jis_2004"},
    {"eucjp", "euc_jp"},
    {"euckr", "euc_kr"},
    {"euctw", "euc_tw"},
    {"gb18030", "gb18030"},
    {"gbk", "gbk"},
    {"iso88591", "latin1"},
    {"iso885910", "latin6"},
    {"iso885913", "latin7"},
    {"iso885914", "latin8"},
    {"iso885915", "latin9"},
    {"iso885916", "latin10"},
    {"iso88592", "latin2"},
    {"iso88593", "latin3"},
    {"iso88594", "latin4"},
    {"iso88595", "iso_8859_5"},
    {"iso88596", "iso_8859_6"},
    {"iso88597", "iso_8859_7"},
    {"iso88598", "iso_8859_8"},
    {"iso88599", "latin5"},
    {"johab", "johab"},
    {"koi8", "koi8r"},
    {"koi8r", "koi8r"},
    {"koi8u", "koi8u"},
    {"latin1", "latin1"},
    {"latin10", "latin10"},
    {"latin2", "latin2"},
    {"latin3", "latin3"},
    {"latin4", "latin4"},
    {"latin5", "latin5"},
    {"latin6", "latin6"},
    {"latin7", "latin7"},
    {"latin8", "latin8"},
    {"latin9", "latin9"},
    {"mskanji", "sjis"},
    {"muleinternal", "mule_internal"},
    {"shiftjis", "sjis"},
    {"shiftjis2004", "shift_jis_2004"},
    {"sjis", "sjis"},
    {"sqlascii", "sql_ascii"},
    {"tcvn", "win1258"},
    {"tcvn5712", "win1258"},
    {"uhc", "uhc"},
    {"unicode", "utf8"},
    {"utf8", "utf8"},
    {"vscii", "win1258"},
    {"win", "win1251"},
    {"win1250", "win1250"},
    {"win1251", "win1251"},
    {"win1252", "win1252"},
    {"win1253", "win1253"},
    {"win1254", "win1254"},
    {"win1255", "win1255"},
    {"win1256", "win1256"},
    {"win1257", "win1257"},
    {"win1258", "win1258"},
    {"win866", "win866"},
    {"win874", "win874"},
    {"win932", "sjis"},
    {"win936", "gbk"},
    {"win949", "uhc"},
    {"win950", "big5"},
    {"windows1250", "win1250"},
    {"windows1251", "win1251"},
    {"windows1252", "win1252"},
    {"windows1253", "win1253"},
    {"windows1254", "win1254"},
    {"windows1255", "win1255"},
    {"windows1256", "win1256"},
    {"windows1257", "win1257"},
    {"windows1258", "win1258"},
    {"windows866", "win866"},
    {"windows874", "win874"},
};

std::string canonicalEncoding(std::string_view name) {
  std::string cleaned = cleanEncodingName(name);
  for (const auto& [alias, official] : kEncodingAliases) {
    if (alias == cleaned) return std::string(official);
  }
  return cleaned;
}

// PostgreSQL's parse_bool(): case-insensitive, unique prefixes of true/false/yes/no, "on"/"off"
// (at least two letters, "o" is ambiguous), and "1"/"0".
std::optional<bool> parseBool(std::string_view value) {
  std::string v;
  for (char c : value) v.push_back(toLower(c));
  if (v.empty()) return std::nullopt;
  auto prefixOf = [&v](std::string_view word) { return word.starts_with(v); };
  switch (v[0]) {
    case 't':
      if (prefixOf("true")) return true;
      break;
    case 'f':
      if (prefixOf("false")) return false;
      break;
    case 'y':
      if (prefixOf("yes")) return true;
      break;
    case 'n':
      if (prefixOf("no")) return false;
      break;
    case 'o':
      if (v.size() >= 2 && prefixOf("on")) return true;
      if (v.size() >= 2 && prefixOf("off")) return false;
      break;
    case '1':
      if (v.size() == 1) return true;
      break;
    case '0':
      if (v.size() == 1) return false;
      break;
    default:
      break;
  }
  return std::nullopt;
}

// Only whole boolean words, for parameters whose type we do not know: "t" or "n" in, say,
// application_name is text, not a boolean.
std::optional<bool> parseBoolWord(std::string_view value) {
  std::string v;
  for (char c : value) v.push_back(toLower(c));
  if (v == "on" || v == "true" || v == "yes" || v == "1") return true;
  if (v == "off" || v == "false" || v == "no" || v == "0") return false;
  return std::nullopt;
}

// Lowercase, without leading/trailing whitespace or whitespace next to a comma:
// "ISO, MDY" and "iso,mdy" become the same text.
std::string normalizeList(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  size_t begin = 0;
  size_t end = value.size();
  while (begin < end && isSpace(value[begin])) ++begin;
  while (end > begin && isSpace(value[end - 1])) --end;
  for (size_t i = begin; i < end; ++i) {
    char c = value[i];
    if (isSpace(c)) {
      size_t j = i;
      while (j < end && isSpace(value[j])) ++j;
      bool besideComma = (!out.empty() && out.back() == ',') || (j < end && value[j] == ',');
      if (!besideComma) out.append(value.substr(i, j - i));
      i = j - 1;
      continue;
    }
    out.push_back(toLower(c));
  }
  return out;
}

bool trimmedEqual(std::string_view a, std::string_view b) {
  return normalizeList(a) == normalizeList(b);
}

}  // namespace

bool paramValuesEqual(std::string_view name, std::string_view a, std::string_view b) {
  std::string canonical = canonicalParamName(name);
  if (canonical == "client_encoding" || canonical == "server_encoding") {
    return canonicalEncoding(a) == canonicalEncoding(b);
  }
  if (canonical == "standard_conforming_strings") {
    auto x = parseBool(normalizeList(a));
    auto y = parseBool(normalizeList(b));
    if (x && y) return *x == *y;
    return trimmedEqual(a, b);
  }
  auto x = parseBoolWord(normalizeList(a));
  auto y = parseBoolWord(normalizeList(b));
  if (x && y) return *x == *y;
  return trimmedEqual(a, b);
}

std::string canonicalParamName(std::string_view name) {
  std::string out(name);
  for (char& c : out) c = toLower(c);
  return out;
}

bool isDefaultTrackedParam(std::string_view name) {
  // Called at every link (once per transaction): compared in place, no lowercase copy.
  static constexpr std::array<std::string_view, 6> kTracked = {
      "client_encoding", "datestyle", "timezone", "intervalstyle", "standard_conforming_strings",
      "application_name"};
  for (auto t : kTracked) {
    if (t.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < t.size() && same; ++i) same = toLower(name[i]) == t[i];
    if (same) return true;
  }
  return false;
}

std::string quoteLiteral(std::string_view value) {
  // Like PostgreSQL's quote_literal(): the E'' form makes the doubled backslashes mean one
  // backslash whatever standard_conforming_strings is on the server.
  bool hasBackslash = value.find('\\') != std::string_view::npos;
  std::string out;
  out.reserve(value.size() + 3);
  if (hasBackslash) out.push_back('E');
  out.push_back('\'');
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back(c);
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

}  // namespace usher::protocol
