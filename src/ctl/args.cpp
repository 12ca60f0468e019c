// Command-line parsing for usherctl subcommands.
#include "usher/ctl/args.h"

#include <charconv>
#include <cstdlib>

namespace usher::ctl {

Result<void> Args::parse(int argc, char** argv, int first,
                         std::span<const std::span<const OptionSpec>> groups) {
  auto find = [&](std::string_view name) -> const OptionSpec* {
    for (const auto& group : groups) {
      for (const auto& o : group) {
        if (o.name == name) return &o;
      }
    }
    return nullptr;
  };
  bool optionsDone = false;
  for (int i = first; i < argc; ++i) {
    std::string_view a = argv[i];
    if (optionsDone || !a.starts_with("--")) {
      if (!optionsDone && a.size() > 1 && a[0] == '-') {
        return failPlain("unknown option " + std::string(a) + " (options are spelled --name)");
      }
      positional.emplace_back(a);
      continue;
    }
    if (a == "--") {
      optionsDone = true;
      continue;
    }
    std::string_view body = a.substr(2);
    std::optional<std::string_view> inlineValue;
    if (auto eq = body.find('='); eq != std::string_view::npos) {
      inlineValue = body.substr(eq + 1);
      body = body.substr(0, eq);
    }
    const OptionSpec* spec = find(body);
    if (!spec) return failPlain("unknown option --" + std::string(body));
    if (spec->metavar.empty()) {
      if (inlineValue) return failPlain("--" + std::string(body) + " takes no value");
      values_[std::string(body)] = "";
      continue;
    }
    if (inlineValue) {
      values_[std::string(body)] = std::string(*inlineValue);
    } else {
      if (i + 1 >= argc) {
        return failPlain("--" + std::string(body) + " needs a value (" +
                         std::string(spec->metavar) + ")");
      }
      values_[std::string(body)] = argv[++i];
    }
  }
  return {};
}

std::optional<std::string> Args::get(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::getOr(std::string_view name, std::string_view fallback) const {
  auto v = get(name);
  return v ? *v : std::string(fallback);
}

Result<int> Args::getInt(std::string_view name, int fallback, int min, int max) const {
  auto v = get(name);
  if (!v) return fallback;
  int out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (v->empty() || ec != std::errc() || end != v->data() + v->size() || out < min || out > max) {
    return failPlain("--" + std::string(name) + " must be an integer between " +
                     std::to_string(min) + " and " + std::to_string(max) + ", got \"" + *v + "\"");
  }
  return out;
}

Result<double> Args::getDouble(std::string_view name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  double out = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || out < 0) {
    return failPlain("--" + std::string(name) + " must be a non-negative number, got \"" + *v +
                     "\"");
  }
  return out;
}

std::vector<std::string> Args::getList(std::string_view name) const {
  std::vector<std::string> out;
  auto v = get(name);
  if (!v) return out;
  size_t pos = 0;
  while (pos <= v->size()) {
    size_t comma = v->find(',', pos);
    if (comma == std::string::npos) comma = v->size();
    std::string item = v->substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(std::move(item));
    pos = comma + 1;
  }
  return out;
}

std::string describeOptions(std::span<const OptionSpec> options) {
  std::string out;
  for (const auto& o : options) {
    std::string left = "  --" + std::string(o.name);
    if (!o.metavar.empty()) left += " " + std::string(o.metavar);
    if (left.size() < 30) {
      left.resize(30, ' ');
    } else {
      left += "\n" + std::string(30, ' ');
    }
    out += left + std::string(o.help) + "\n";
  }
  return out;
}

}  // namespace usher::ctl
