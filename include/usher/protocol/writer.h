// MessageWriter: builds protocol messages directly into an IoBuffer (no temporary strings).
#pragma once

#include <cstdint>
#include <string_view>

#include "usher/base/io_buffer.h"
#include "usher/protocol/tags.h"

namespace usher::protocol {

// begin() reserves the header, put*() append fields, end() patches the length. One message at a
// time per writer; several writers may append to the same buffer one after another.
class MessageWriter {
 public:
  explicit MessageWriter(IoBuffer& out) : out_(out) {}
  MessageWriter& begin(char tag);  // tagged message
  MessageWriter& beginUntagged();  // startup / cancel / SSL request
  MessageWriter& u8(uint8_t v);
  MessageWriter& i16(int16_t v);
  MessageWriter& i32(int32_t v);
  MessageWriter& cstr(std::string_view s);  // bytes then NUL
  MessageWriter& raw(std::string_view s);
  void end();

 private:
  IoBuffer& out_;
  size_t lengthAt_ = 0;  // offset of the length field from the buffer's read position
};

// Common messages, each appended to `out`.
void writeAuthRequest(IoBuffer& out, AuthCode code, std::string_view extra = {});
void writeParameterStatus(IoBuffer& out, std::string_view name, std::string_view value);
void writeBackendKeyData(IoBuffer& out, int32_t pid, int32_t key);
void writeReadyForQuery(IoBuffer& out, char status);
void writeQuery(IoBuffer& out, std::string_view sql);
void writeTerminate(IoBuffer& out);
void writeCancelRequest(IoBuffer& out, int32_t pid, int32_t key);
void writePasswordMessage(IoBuffer& out, std::string_view payload);  // 'p' + bytes (+NUL for text)
void writeSaslInitialResponse(IoBuffer& out, std::string_view mechanism, std::string_view data);
void writeSaslResponse(IoBuffer& out, std::string_view data);
void writeNegotiateProtocolVersion(IoBuffer& out, int32_t newestMinor,
                                   std::initializer_list<std::string_view> unsupportedOptions);

// ErrorResponse ('E') or NoticeResponse ('N'). severity: "ERROR", "FATAL", "NOTICE", ...
void writeErrorResponse(IoBuffer& out, std::string_view severity, std::string_view sqlstate,
                        std::string_view message, std::string_view detail = {},
                        char tag = be::kErrorResponse);

}  // namespace usher::protocol
