// HttpEndpoint: the optional metrics listener (metrics_listen). A minimal HTTP/1.0 server on the
// worker's loop: reads one request, answers it, closes. Never blocks the loop.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "usher/base/result.h"

namespace usher::net {
class Worker;
}

namespace usher::metrics {

class HttpEndpoint {
 public:
  explicit HttpEndpoint(net::Worker& worker) : worker_(worker) {}
  ~HttpEndpoint();
  // `address` is "host:port" (IPv4, [IPv6] or a host name resolved at startup).
  Result<void> listen(const std::string& address);
  void close();

 private:
  static void onAcceptable(uv_poll_t* handle, int status, int events);
  net::Worker& worker_;
  uv_poll_t poll_{};
  int fd_ = -1;
};

}  // namespace usher::metrics
