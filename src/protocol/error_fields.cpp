// Reading the fields of an ErrorResponse / NoticeResponse body.
#include "usher/protocol/error_fields.h"

#include "usher/base/byte_reader.h"

namespace usher::protocol {

ErrorFields parseErrorFields(std::string_view payload) {
  ErrorFields fields;
  bool haveV = false;
  ByteReader r(payload);
  // A truncated list yields the fields read so far: the caller only uses them for logging and
  // deciding on SQLSTATE, so a best-effort answer beats none.
  while (true) {
    uint8_t type = r.u8();
    if (!r.ok() || type == 0) break;
    std::string_view value = r.cstr();
    if (!r.ok()) break;
    switch (type) {
      case 'V':
        fields.severity = value;
        haveV = true;
        break;
      case 'S':
        // 'S' may be translated; keep it only when the server sent no 'V' (before 9.6).
        if (!haveV) fields.severity = value;
        break;
      case 'C':
        fields.sqlstate = value;
        break;
      case 'M':
        fields.message = value;
        break;
      case 'D':
        fields.detail = value;
        break;
      default:
        break;
    }
  }
  return fields;
}

}  // namespace usher::protocol
