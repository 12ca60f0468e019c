// Command-line parsing for usherctl subcommands: --name VALUE / --name=VALUE options, flags and
// positional arguments, checked against each subcommand's table of options.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "usher/base/result.h"

namespace usher::ctl {

struct OptionSpec {
  std::string_view name;     // without the leading "--"
  std::string_view metavar;  // empty: a flag without a value
  std::string_view help;
};

class Args {
 public:
  // Parses argv[first..]; every option must be in one of `groups`. "--" ends options.
  Result<void> parse(int argc, char** argv, int first,
                     std::span<const std::span<const OptionSpec>> groups);

  bool has(std::string_view name) const { return values_.contains(std::string(name)); }
  std::optional<std::string> get(std::string_view name) const;
  std::string getOr(std::string_view name, std::string_view fallback) const;
  // An integer option within [min, max]; `fallback` when absent.
  Result<int> getInt(std::string_view name, int fallback, int min, int max) const;
  Result<double> getDouble(std::string_view name, double fallback) const;
  // A comma-separated list option (empty when absent).
  std::vector<std::string> getList(std::string_view name) const;

  std::vector<std::string> positional;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// "  --name VALUE   help" lines for a usage text.
std::string describeOptions(std::span<const OptionSpec> options);

}  // namespace usher::ctl
