// Socket I/O: nonblocking recv/writev on a uv_poll_t, and the close sequence.
#include "usher/net/socket.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace usher::net {

Socket::~Socket() {
  // Sessions are freed from onSocketClosed, after the handle is closed; an fd that was never
  // handed to libuv is closed here.
  if (fd_ >= 0 && !polling_) ::close(fd_);
}

bool Socket::open(int fd) {
  fd_ = fd;
  if (uv_poll_init_socket(loop_, &poll_, fd) != 0) return false;
  poll_.data = this;
  polling_ = true;
  activeEvents_ = 0;
  want(wantRead_, wantWrite_);
  return true;
}

void Socket::want(bool read, bool write) {
  wantRead_ = read;
  wantWrite_ = write;
  if (!polling_ || closing_) return;
  int events = (read ? UV_READABLE : 0) | (write ? UV_WRITABLE : 0);
  if (events == activeEvents_) return;
  activeEvents_ = events;
  if (events == 0)
    uv_poll_stop(&poll_);
  else
    uv_poll_start(&poll_, events, &Socket::onPoll);
}

void Socket::onPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Socket*>(handle->data);
  if (self->closing_) return;
  if (status < 0) {
    // An error on the fd (e.g. EBADF after a reset): report it as readable so the owner's read
    // sees the error and closes through its normal path.
    self->owner_.onReadable();
    return;
  }
  if ((events & UV_WRITABLE) && !self->closing_) self->owner_.onWritable();
  if ((events & UV_READABLE) && !self->closing_) self->owner_.onReadable();
}

IoStatus Socket::readSome(BufferPool& buffers, size_t* bytesRead) {
  buffers.attach(in);
  if (in.writable() == 0) {
    in.compact();
    if (in.writable() == 0) return IoStatus::Ok;  // full: the caller must consume first
  }
  ssize_t n;
  do {
    n = ::recv(fd_, in.writePtr(), in.writable(), 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    in.commit(size_t(n));
    if (bytesRead) *bytesRead = size_t(n);
    return IoStatus::Ok;
  }
  if (n == 0) return IoStatus::Eof;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::WouldBlock;
  return IoStatus::Error;
}

IoStatus Socket::send(Socket* src, Outflow* flow, size_t* bytesSent) {
  iovec iov[2];
  int count = 0;
  size_t ownBytes = out.readable();
  size_t fwdBytes = (src && flow) ? flow->ready : 0;
  if (ownBytes) iov[count++] = {out.readPtr(), ownBytes};
  if (fwdBytes) iov[count++] = {src->in.readPtr(), fwdBytes};
  if (count == 0) {
    if (wantWrite_) wantWrite(false);
    return IoStatus::Ok;
  }
  ssize_t n;
  do {
    n = count == 1 ? ::send(fd_, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                   : ::writev(fd_, iov, count);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wantWrite(true);
      return IoStatus::WouldBlock;
    }
    return IoStatus::Error;
  }
  size_t sent = size_t(n);
  if (bytesSent) *bytesSent = sent;
  size_t fromOwn = sent < ownBytes ? sent : ownBytes;
  if (fromOwn) out.consume(fromOwn);
  size_t fromFwd = sent - fromOwn;
  if (fromFwd) {
    src->in.consume(fromFwd);
    flow->ready -= fromFwd;
  }
  bool done = fromOwn == ownBytes && fromFwd == fwdBytes;
  wantWrite(!done);
  return done ? IoStatus::Ok : IoStatus::WouldBlock;
}

void Socket::close() {
  if (closing_) return;
  closing_ = true;
  if (!polling_) {
    // Never handed to libuv (open() failed): nothing to wait for; the owner frees itself.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return;
  }
  // uv_close first: it drops the fd from libuv's pending events synchronously, so a new socket
  // that reuses the number cannot receive this one's events.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &Socket::onClose);
  ::close(fd_);
  fd_ = -1;
}

int Socket::release() {
  if (closing_ || !polling_) return -1;
  closing_ = true;
  // uv_close drops the fd from this loop's epoll set now, before another loop adds it.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &Socket::onClose);
  return std::exchange(fd_, -1);
}

void Socket::onClose(uv_handle_t* handle) {
  auto* self = static_cast<Socket*>(handle->data);
  self->polling_ = false;
  self->owner_.onSocketClosed();
}

}  // namespace usher::net
