// Reading ErrorResponse / NoticeResponse fields (severity, SQLSTATE, message).
#pragma once

#include <string_view>

namespace usher::protocol {

struct ErrorFields {
  std::string_view severity;  // 'V' (non-localized) or 'S'
  std::string_view sqlstate;  // 'C'
  std::string_view message;   // 'M'
  std::string_view detail;    // 'D'
};

// `payload` is the message body after the 5-byte header. Views point into it.
ErrorFields parseErrorFields(std::string_view payload);

}  // namespace usher::protocol
