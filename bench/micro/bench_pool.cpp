// Pool checkout/checkin benchmarks — by proxy. A real Pool::acquire links a ClientSession and a
// ServerSession, which need a Worker's event loop and connected sockets, so it cannot run without
// a live server. What is timed instead is the data-structure work a checkout and a checkin do in
// pool.cpp: moving a server between the intrusive state lists (idle -> active -> idle, as
// Pool::serverStateChanged does), a client between clients_/waiting_, and the BufferPool block
// handout a session takes when it has bytes to hold and returns when it goes quiet.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "usher/base/intrusive_list.h"
#include "usher/base/io_buffer.h"

namespace {

using namespace usher;

struct FakeServer {
  ListNode poolNode;
  int state = 0;  // 0 idle, 1 active
};
struct FakeClient {
  ListNode poolNode;
};
using ServerList = IntrusiveList<FakeServer, &FakeServer::poolNode>;
using ClientList = IntrusiveList<FakeClient, &FakeClient::poolNode>;

// Mirrors Pool::serverStateChanged: unlink from every state list, link on the one of its state.
void moveTo(FakeServer& s, int state, ServerList& pending, ServerList& idle, ServerList& active) {
  pending.remove(s);
  idle.remove(s);
  active.remove(s);
  s.state = state;
  (state == 0 ? idle : active).pushBack(s);
}

// One transaction's list traffic with a pool of `range(0)` servers, all idle: the client takes
// the most recently used idle server (idle_.back()), the server goes active, then idle again.
void BM_PoolCheckoutCheckinLists(benchmark::State& state) {
  std::vector<FakeServer> servers(size_t(state.range(0)));
  ServerList pending, idle, active;
  for (auto& s : servers) idle.pushBack(s);
  FakeClient client;
  ClientList clients;
  clients.pushBack(client);
  for (auto _ : state) {
    FakeServer* s = idle.back();
    moveTo(*s, 1, pending, idle, active);
    benchmark::DoNotOptimize(s);
    moveTo(*s, 0, pending, idle, active);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PoolCheckoutCheckinLists)->Arg(1)->Arg(20);

// The contended case: every server busy, so the client queues (clients_ -> waiting_, FIFO) and is
// handed the server another client releases.
void BM_PoolWaitQueueHandoff(benchmark::State& state) {
  FakeServer server;
  ServerList pending, idle, active;
  active.pushBack(server);
  std::vector<FakeClient> clients(size_t(state.range(0)));
  ClientList linked, waiting;
  for (auto& c : clients) linked.pushBack(c);
  for (auto _ : state) {
    FakeClient* c = linked.popFront();
    waiting.pushBack(*c);                   // acquire: no idle server, queue
    FakeClient* next = waiting.popFront();  // a server is released: first waiter wins
    linked.pushBack(*next);
    moveTo(server, 0, pending, idle, active);  // serverIdle ...
    moveTo(server, 1, pending, idle, active);  // ... and straight back out to the waiter
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PoolWaitQueueHandoff)->Arg(200);

// The buffer a session borrows for one transaction's bytes and gives back when drained.
void BM_BufferPoolAttachDetach(benchmark::State& state) {
  BufferPool pool(size_t(state.range(0)));
  IoBuffer in;
  for (auto _ : state) {
    pool.attach(in);
    in.commit(64);
    in.consume(64);
    pool.detach(in);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BufferPoolAttachDetach)->Arg(16384);

}  // namespace
