// The admin console: a virtual database ("pgbouncer", alias "usher") answering PgBouncer's SHOW
// and control commands over the simple query protocol.
#pragma once

#include <string_view>

#include "usher/base/io_buffer.h"

namespace usher::client {
class ClientSession;
}
namespace usher::net {
class Worker;
}

namespace usher::admin {

bool isConsoleDatabase(std::string_view database);

// ParameterStatus messages a console client gets at login.
void writeWelcome(IoBuffer& out);

// Answers one query. Appends the whole response to the client's output, ending with
// ReadyForQuery — except for commands that complete later (PAUSE, WAIT_CLOSE, SUSPEND), which
// park the client until completePending() finishes them.
void handleQuery(net::Worker& worker, client::ClientSession& client, std::string_view sql);

// Janitor tick and pool events: finish parked commands whose condition now holds.
void completePending(net::Worker& worker);

}  // namespace usher::admin
