// Janitor: the periodic sweep over pools and sessions.
#include "usher/janitor/janitor.h"

#include "usher/admin/console.h"
#include "usher/client/client_session.h"
#include "usher/pool/pool.h"

#include <algorithm>
#include "usher/net/worker.h"
#include "usher/pool/server_session.h"

namespace usher::janitor {

Janitor::Janitor(net::Worker& worker) : worker_(worker) {
  uv_timer_init(worker.loop(), &timer_);
  timer_.data = this;
}

void Janitor::start() {
  uv_timer_start(&timer_, &Janitor::onTick, kTickMs, kTickMs);
}

void Janitor::stop() {
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void Janitor::onTick(uv_timer_t* timer) {
  static_cast<Janitor*>(timer->data)->tick();
}

void Janitor::tick() {
  int64_t now = worker_.nowMs();
  worker_.pools().sweep(now);
  if (++ticks_ % kSessionSweepEvery == 0) sweepClients(now);
  admin::completePending(worker_);
  // Averages for SHOW STATS_AVERAGES, over stats_period (PgBouncer's default: 60 s).
  int64_t period = std::max<int64_t>(1000, worker_.config().statsPeriod);
  if (lastStatsMs_ == 0) lastStatsMs_ = now;
  if (now - lastStatsMs_ >= period) {
    double seconds = double(now - lastStatsMs_) / 1000.0;
    worker_.pools().forEach([&](pool::Pool& p) { p.rollStatsPeriod(seconds); });
    lastStatsMs_ = now;
  }
}

// Client timeouts, with PgBouncer's messages.
void Janitor::sweepClients(int64_t nowMs) {
  const auto& cfg = worker_.config();
  worker_.clients().forEach([&](client::ClientSession& c) {
    using S = client::ClientState;
    switch (c.state()) {
      case S::Startup:
      case S::Auth:
        if (cfg.clientLoginTimeout > 0 && nowMs - c.connectedAtMs() >= cfg.clientLoginTimeout)
          c.fail("08P01", "client_login_timeout");
        break;
      case S::Idle:
        if (cfg.clientIdleTimeout > 0 && nowMs - c.stateSinceMs() >= cfg.clientIdleTimeout)
          c.fail("08P01", "client_idle_timeout");
        break;
      case S::Linked: {
        auto* s = c.server();
        if (!s) break;
        if (cfg.queryTimeout > 0 && c.pendingReady() > 0 &&
            nowMs - c.busySinceMs() >= cfg.queryTimeout) {
          s->sendCancel();
          c.fail("08P01", "query_timeout");
        } else if (cfg.idleTransactionTimeout > 0 && c.pendingReady() == 0 &&
                   s->txStatus() != 'I' && nowMs - c.lastReadyMs() >= cfg.idleTransactionTimeout) {
          c.fail("08P01", "idle transaction timeout");
        }
        break;
      }
      default:
        break;
    }
  });
}

}  // namespace usher::janitor
