// MessageWriter and the common protocol messages the pooler builds itself.
#include "usher/protocol/writer.h"

#include <cstring>

namespace usher::protocol {
namespace {

void storeBigEndian32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

}  // namespace

// The length field's position is kept relative to readPtr(): ensureWritable() may compact (moving
// the unread bytes to the front) or grow (moving them to a new block) between begin() and end(),
// and both preserve offsets from the read position, while raw pointers would dangle.
MessageWriter& MessageWriter::begin(char tag) {
  out_.ensureWritable(5);
  *out_.writePtr() = uint8_t(tag);
  out_.commit(1);
  return beginUntagged();
}

MessageWriter& MessageWriter::beginUntagged() {
  out_.ensureWritable(4);
  lengthAt_ = out_.readable();
  std::memset(out_.writePtr(), 0, 4);
  out_.commit(4);
  return *this;
}

MessageWriter& MessageWriter::u8(uint8_t v) {
  out_.ensureWritable(1);
  *out_.writePtr() = v;
  out_.commit(1);
  return *this;
}

MessageWriter& MessageWriter::i16(int16_t v) {
  out_.ensureWritable(2);
  uint8_t* p = out_.writePtr();
  p[0] = uint8_t(uint16_t(v) >> 8);
  p[1] = uint8_t(v);
  out_.commit(2);
  return *this;
}

MessageWriter& MessageWriter::i32(int32_t v) {
  out_.ensureWritable(4);
  storeBigEndian32(out_.writePtr(), uint32_t(v));
  out_.commit(4);
  return *this;
}

MessageWriter& MessageWriter::cstr(std::string_view s) {
  out_.ensureWritable(s.size() + 1);
  if (!s.empty()) std::memcpy(out_.writePtr(), s.data(), s.size());
  out_.writePtr()[s.size()] = 0;
  out_.commit(s.size() + 1);
  return *this;
}

MessageWriter& MessageWriter::raw(std::string_view s) {
  if (!s.empty()) out_.append(s);
  return *this;
}

void MessageWriter::end() {
  // The length covers itself and everything after it, but not the tag.
  storeBigEndian32(out_.readPtr() + lengthAt_, uint32_t(out_.readable() - lengthAt_));
}

void writeAuthRequest(IoBuffer& out, AuthCode code, std::string_view extra) {
  MessageWriter(out).begin(be::kAuthentication).i32(int32_t(code)).raw(extra).end();
}

void writeParameterStatus(IoBuffer& out, std::string_view name, std::string_view value) {
  MessageWriter(out).begin(be::kParameterStatus).cstr(name).cstr(value).end();
}

void writeBackendKeyData(IoBuffer& out, int32_t pid, int32_t key) {
  MessageWriter(out).begin(be::kBackendKeyData).i32(pid).i32(key).end();
}

void writeReadyForQuery(IoBuffer& out, char status) {
  MessageWriter(out).begin(be::kReadyForQuery).u8(uint8_t(status)).end();
}

void writeQuery(IoBuffer& out, std::string_view sql) {
  MessageWriter(out).begin(fe::kQuery).cstr(sql).end();
}

void writeTerminate(IoBuffer& out) {
  MessageWriter(out).begin(fe::kTerminate).end();
}

void writeCancelRequest(IoBuffer& out, int32_t pid, int32_t key) {
  MessageWriter(out).beginUntagged().i32(int32_t(kCancelRequestCode)).i32(pid).i32(key).end();
}

void writePasswordMessage(IoBuffer& out, std::string_view payload) {
  MessageWriter(out).begin(fe::kPassword).cstr(payload).end();
}

void writeSaslInitialResponse(IoBuffer& out, std::string_view mechanism, std::string_view data) {
  MessageWriter w(out);
  w.begin(fe::kPassword).cstr(mechanism);
  // -1 means "no initial response"; SCRAM always sends one, but the layout allows none.
  if (data.empty()) {
    w.i32(-1);
  } else {
    w.i32(int32_t(data.size())).raw(data);
  }
  w.end();
}

void writeSaslResponse(IoBuffer& out, std::string_view data) {
  MessageWriter(out).begin(fe::kPassword).raw(data).end();
}

void writeNegotiateProtocolVersion(IoBuffer& out, int32_t newestMinor,
                                   std::initializer_list<std::string_view> unsupportedOptions) {
  MessageWriter w(out);
  w.begin(be::kNegotiateProtocolVersion).i32(newestMinor).i32(int32_t(unsupportedOptions.size()));
  for (std::string_view option : unsupportedOptions) w.cstr(option);
  w.end();
}

void writeErrorResponse(IoBuffer& out, std::string_view severity, std::string_view sqlstate,
                        std::string_view message, std::string_view detail, char tag) {
  MessageWriter w(out);
  // 'S' may be localized by a real server; 'V' never is, and clients since 9.6 prefer it.
  w.begin(tag).u8('S').cstr(severity).u8('V').cstr(severity).u8('C').cstr(sqlstate);
  w.u8('M').cstr(message);
  if (!detail.empty()) w.u8('D').cstr(detail);
  w.u8(0).end();
}

}  // namespace usher::protocol
