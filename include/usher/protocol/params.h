// Session parameters that the pooler keeps in step between a client and the server it is linked to.
#pragma once

#include <string>
#include <string_view>

namespace usher::protocol {

// True when two values of parameter `name` mean the same to PostgreSQL, so no SET is needed:
// - client_encoding / server_encoding: PostgreSQL's encoding-name rules (case and non-alphanumerics
//   ignored, aliases such as "unicode" = "utf8" = "UTF-8", "latin1" = "ISO-8859-1")
// - boolean parameters (standard_conforming_strings, ...): on/true/yes/1 and off/false/no/0
// - DateStyle, IntervalStyle, TimeZone and others: case-insensitive, ignoring spaces around commas
bool paramValuesEqual(std::string_view name, std::string_view a, std::string_view b);

// Canonical lowercase form of a parameter name (PostgreSQL GUC names are case-insensitive).
std::string canonicalParamName(std::string_view name);

// Parameters tracked for every client (PgBouncer's list): client_encoding, DateStyle, TimeZone,
// IntervalStyle, standard_conforming_strings, application_name. `name` in any case.
bool isDefaultTrackedParam(std::string_view name);

// Quotes `value` as a SQL string literal ('...' with '' doubling; E'' form when it has a
// backslash).
std::string quoteLiteral(std::string_view value);

}  // namespace usher::protocol
