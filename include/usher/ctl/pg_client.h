// PgClient: a small blocking PostgreSQL client built on usher's protocol/ and auth/ code, for
// usherctl's own queries (no libpq). Simple query protocol only; no TLS (sslmode=disable).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/base/io_buffer.h"
#include "usher/base/result.h"

namespace usher::ctl {

struct ConnParams {
  std::string host = "/var/run/postgresql";  // a directory (Unix socket) or a host name / IP
  int port = 5432;
  std::string user;
  std::string database;
  std::string password;  // empty: none (trust / peer)
  std::string applicationName = "usherctl";
  int connectTimeoutMs = 10000;
  int ioTimeoutMs = 600000;  // one query's wait for the server (CREATE DATABASE, big sizes)
  // "host:port" or "/dir/.s.PGSQL.port", for messages.
  std::string where() const;
};

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string commandTag;  // "SELECT 2", "CREATE ROLE", "RELOAD", ...
  // Index of a column by name, or -1.
  int column(std::string_view name) const;
  // Row r's value in column `name` ("" for NULL or a missing column).
  std::string value(size_t r, std::string_view name) const;
};

class PgClient {
 public:
  PgClient(PgClient&& o) noexcept;
  PgClient& operator=(PgClient&& o) noexcept;
  PgClient(const PgClient&) = delete;
  PgClient& operator=(const PgClient&) = delete;
  ~PgClient();  // sends Terminate and closes

  // Connects and logs in (trust, cleartext, md5 or SCRAM-SHA-256). Errors say where and why;
  // a server error keeps its SQLSTATE.
  static Result<PgClient> connect(const ConnParams& params);

  // Runs `sql` with the simple query protocol; returns every result (one per statement). On an
  // ErrorResponse the error (with SQLSTATE) is returned after the server is ready again, so the
  // connection stays usable.
  Result<std::vector<QueryResult>> execute(std::string_view sql);
  // The last result of execute().
  Result<QueryResult> query(std::string_view sql);

  // A ParameterStatus the server sent (server_version, ...), or "".
  std::string parameter(std::string_view name) const;
  const ConnParams& params() const { return params_; }

 private:
  PgClient() = default;
  struct Message {
    char tag = 0;
    std::string payload;
  };
  Result<void> login();
  Result<void> flush();
  Result<Message> readMessage();
  Error serverError(const Message& m) const;
  void close();

  ConnParams params_;
  int fd_ = -1;
  IoBuffer in_;
  IoBuffer out_;
  std::vector<std::pair<std::string, std::string>> serverParams_;
};

// SQL quoting for identifiers ("...") and literals ('...').
std::string quoteIdent(std::string_view name);
std::string quoteLiteralSql(std::string_view value);

}  // namespace usher::ctl
