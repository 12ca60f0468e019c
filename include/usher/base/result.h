// Result<T>: the error-as-value type used on every path that can fail (no exceptions on the data
// path).
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace usher {

// An error a person can act on. `sqlstate` is set when the error is meant for a PostgreSQL client
// (five characters, e.g. "08P01"); config and system errors leave it empty.
struct Error {
  std::string sqlstate;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

// Builds the error side of a Result: `return fail("08P01", "...")`.
inline std::unexpected<Error> fail(std::string sqlstate, std::string message) {
  return std::unexpected<Error>(Error{std::move(sqlstate), std::move(message)});
}

// For errors that are not addressed to a PostgreSQL client (config, system).
inline std::unexpected<Error> failPlain(std::string message) {
  return std::unexpected<Error>(Error{{}, std::move(message)});
}

}  // namespace usher
