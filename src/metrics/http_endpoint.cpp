// HttpEndpoint: accept, read one request, answer /metrics (or 404), close.
#include "usher/metrics/http_endpoint.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "usher/base/log.h"
#include "usher/metrics/prometheus.h"
#include "usher/net/address.h"
#include "usher/net/socket.h"
#include "usher/net/worker.h"

namespace usher::metrics {
namespace {

constexpr size_t kMaxRequest = 8192;

// One scrape: frees itself when its socket has closed.
class Scrape final : public net::SocketOwner {
 public:
  Scrape(net::Worker& worker) : worker_(worker), sock_(worker.loop(), *this) {}
  bool start(int fd) {
    sock_.want(true, false);
    return sock_.open(fd);
  }

 private:
  void onReadable() override {
    auto status = sock_.readSome(worker_.buffers());
    if (status == net::IoStatus::WouldBlock) return;
    if (status != net::IoStatus::Ok) {
      sock_.close();
      return;
    }
    std::string_view req = sock_.in.view();
    if (req.find("\r\n\r\n") == std::string_view::npos &&
        req.find("\n\n") == std::string_view::npos) {
      if (req.size() > kMaxRequest)
        respond("431 Request Header Fields Too Large", "text/plain", "");
      return;  // wait for the rest of the headers
    }
    bool get = req.starts_with("GET ");
    size_t pathEnd = req.find(' ', 4);
    std::string_view path =
        get && pathEnd != std::string_view::npos ? req.substr(4, pathEnd - 4) : std::string_view{};
    if (!get)
      respond("405 Method Not Allowed", "text/plain", "only GET\n");
    else if (path == "/metrics" || path.starts_with("/metrics?"))
      scrapeMetrics();
    else
      respond("404 Not Found", "text/plain", "try /metrics\n");
  }
  void onWritable() override {
    if (sock_.send() != net::IoStatus::WouldBlock) finish();
  }
  void onSocketClosed() override {
    *alive_ = false;
    delete this;
  }

  // Every worker adds its part on its own thread; the answer goes out here when all have.
  void scrapeMetrics() {
    sock_.wantRead(false);
    auto parts = std::make_shared<std::vector<MetricsSnapshot>>(size_t(worker_.engine().size()));
    worker_.engine().gather(
        worker_.index(),
        [parts](net::Worker& w) { collectMetrics(w, (*parts)[size_t(w.index())]); },
        [this, alive = alive_, parts](net::Worker&) {
          if (!*alive) return;  // the scraper hung up meanwhile
          MetricsSnapshot total;
          for (const auto& p : *parts) total += p;
          respond("200 OK", "text/plain; version=0.0.4; charset=utf-8", renderPrometheus(total));
        });
  }

  void respond(std::string_view status, std::string_view type, const std::string& body) {
    sock_.in.consume(sock_.in.readable());
    std::string head =
        "HTTP/1.0 " + std::string(status) + "\r\nContent-Type: " + std::string(type) +
        "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    sock_.out.append(head);
    sock_.out.append(body);
    sock_.wantRead(false);
    if (sock_.send() != net::IoStatus::WouldBlock) finish();
  }
  void finish() {
    ::shutdown(sock_.fd(), SHUT_WR);
    sock_.releaseBuffers(worker_.buffers());
    sock_.close();
  }

  net::Worker& worker_;
  net::Socket sock_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

HttpEndpoint::~HttpEndpoint() = default;

Result<void> HttpEndpoint::listen(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return failPlain("metrics_listen: expected host:port, got " + address);
  std::string host = address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = std::atoi(address.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return failPlain("metrics_listen: bad port in " + address);
  auto eps = net::listenEndpoints({host.empty() ? "*" : host}, port);
  if (!eps || eps->empty()) return failPlain("metrics_listen: cannot resolve " + address);
  auto fd = net::listenOn(eps->front(), 64, false, 0);
  if (!fd) return std::unexpected(fd.error());
  fd_ = *fd;
  uv_poll_init_socket(worker_.loop(), &poll_, fd_);
  poll_.data = this;
  uv_poll_start(&poll_, UV_READABLE, &HttpEndpoint::onAcceptable);
  log::net().info("metrics on http://{}/metrics", eps->front().text);
  return {};
}

void HttpEndpoint::onAcceptable(uv_poll_t* handle, int status, int) {
  auto* self = static_cast<HttpEndpoint*>(handle->data);
  if (status < 0) return;
  for (int i = 0; i < 16; ++i) {
    int fd = ::accept4(self->fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto* scrape = new Scrape(self->worker_);
    if (!scrape->start(fd)) delete scrape;
  }
}

void HttpEndpoint::close() {
  if (fd_ < 0) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
  ::close(fd_);
  fd_ = -1;
}

}  // namespace usher::metrics
