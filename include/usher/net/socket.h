// Socket: one nonblocking file descriptor polled by libuv (uv_poll_t), with its read buffer, its
// queue of pooler-generated output, and the zero-copy forwarding pump between two sockets.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>

#include "usher/base/io_buffer.h"

namespace usher::net {

// Implemented by the session that owns a Socket. Calls come from the loop, one at a time.
class SocketOwner {
 public:
  virtual void onReadable() = 0;
  virtual void onWritable() = 0;
  // From the uv_close callback: the handle is gone, the owner may free itself now.
  virtual void onSocketClosed() = 0;

 protected:
  ~SocketOwner() = default;
};

enum class IoStatus { Ok, WouldBlock, Eof, Error };

// Bytes read from a socket and approved for forwarding to its peer. The approved bytes are the
// first `ready` bytes of the socket's read buffer; `passthrough` counts bytes of a message whose
// header was seen and whose rest will be forwarded as it arrives without being buffered whole.
struct Outflow {
  size_t ready = 0;
  uint32_t passthrough = 0;
};

class Socket {
 public:
  Socket(uv_loop_t* loop, SocketOwner& owner) : loop_(loop), owner_(owner) {}
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket();

  // Takes ownership of a nonblocking fd and starts polling with the current interest.
  bool open(int fd);
  bool isOpen() const { return fd_ >= 0 && !closing_; }
  bool closing() const { return closing_; }
  int fd() const { return fd_; }

  // What to wait for. Changes the epoll registration only when the set changes.
  void want(bool read, bool write);
  void wantRead(bool read) { want(read, wantWrite_); }
  void wantWrite(bool write) { want(wantRead_, write); }
  bool wantsRead() const { return wantRead_; }

  // Reads what is available into `in` (taking a block from `buffers` if it has none). One recv
  // per call: the poll is level-triggered, so unread bytes wake us again.
  IoStatus readSome(BufferPool& buffers, size_t* bytesRead = nullptr);

  // Sends this socket's `out` queue, then the approved region of `src` (forwarded bytes that stay
  // in the source's read buffer), with one writev. Consumes what was sent from both. Returns Ok
  // when everything went, WouldBlock when something is left (write interest is then set), Error
  // when the peer is gone.
  IoStatus send(Socket* src = nullptr, Outflow* flow = nullptr, size_t* bytesSent = nullptr);
  bool hasPendingOutput() const { return !out.empty(); }

  // Returns empty buffers to the pool so an idle connection holds no memory for them.
  void releaseBuffers(BufferPool& buffers) {
    buffers.detach(in);
    buffers.detach(out);
  }

  // Idempotent. Stops polling, closes the fd, and calls owner.onSocketClosed() from the loop.
  void close();
  // Like close(), but the fd stays open and is returned: the connection moves to another loop.
  int release();

  IoBuffer in;   // bytes read from the peer, not yet consumed
  IoBuffer out;  // bytes the pooler generated for the peer, not yet sent

 private:
  static void onPoll(uv_poll_t* handle, int status, int events);
  static void onClose(uv_handle_t* handle);

  uv_loop_t* loop_;
  SocketOwner& owner_;
  uv_poll_t poll_{};
  int fd_ = -1;
  bool polling_ = false;
  bool closing_ = false;
  bool wantRead_ = false;
  bool wantWrite_ = false;
  int activeEvents_ = 0;
};

}  // namespace usher::net
