// Message tags and magic numbers of the PostgreSQL frontend/backend protocol, version 3.
#pragma once

#include <cstdint>

namespace usher::protocol {

constexpr uint32_t kProtocolV3 = 3u << 16;           // 196608
constexpr uint32_t kProtocolV3_2 = (3u << 16) | 2u;  // 3.2 (PostgreSQL 18)
constexpr uint32_t kCancelRequestCode = 80877102;
constexpr uint32_t kSslRequestCode = 80877103;
constexpr uint32_t kGssEncRequestCode = 80877104;

// Largest startup packet we accept (PostgreSQL: 10000 bytes).
constexpr uint32_t kMaxStartupPacket = 10000;

namespace fe {  // frontend (client) -> backend (server)
constexpr char kBind = 'B';
constexpr char kClose = 'C';
constexpr char kCopyData = 'd';
constexpr char kCopyDone = 'c';
constexpr char kCopyFail = 'f';
constexpr char kDescribe = 'D';
constexpr char kExecute = 'E';
constexpr char kFlush = 'H';
constexpr char kFunctionCall = 'F';
constexpr char kParse = 'P';
constexpr char kPassword = 'p';  // also SASLInitialResponse / SASLResponse / GSSResponse
constexpr char kQuery = 'Q';
constexpr char kSync = 'S';
constexpr char kTerminate = 'X';
}  // namespace fe

namespace be {  // backend (server) -> frontend (client)
constexpr char kAuthentication = 'R';
constexpr char kBackendKeyData = 'K';
constexpr char kBindComplete = '2';
constexpr char kCloseComplete = '3';
constexpr char kCommandComplete = 'C';
constexpr char kCopyData = 'd';
constexpr char kCopyDone = 'c';
constexpr char kCopyInResponse = 'G';
constexpr char kCopyOutResponse = 'H';
constexpr char kCopyBothResponse = 'W';
constexpr char kDataRow = 'D';
constexpr char kEmptyQueryResponse = 'I';
constexpr char kErrorResponse = 'E';
constexpr char kFunctionCallResponse = 'V';
constexpr char kNegotiateProtocolVersion = 'v';
constexpr char kNoData = 'n';
constexpr char kNoticeResponse = 'N';
constexpr char kNotificationResponse = 'A';
constexpr char kParameterDescription = 't';
constexpr char kParameterStatus = 'S';
constexpr char kParseComplete = '1';
constexpr char kPortalSuspended = 's';
constexpr char kReadyForQuery = 'Z';
constexpr char kRowDescription = 'T';
}  // namespace be

// Authentication request codes carried in an 'R' message.
enum class AuthCode : int32_t {
  Ok = 0,
  CleartextPassword = 3,
  Md5Password = 5,
  Sasl = 10,
  SaslContinue = 11,
  SaslFinal = 12,
};

}  // namespace usher::protocol
