#include "path_lines.h"

namespace scanner {

bool PathLineReader::next(PathLine& out) {
  for (;;) {
    out.path.clear();
    out.error.clear();
    size_t length = 0;
    bool any = false, nul = false;
    for (int c; (c = in_.get()) != std::char_traits<char>::eof();) {
      any = true;
      if (c == '\n') break;
      if (c == '\0') nul = true;
      if (++length <= kMaxPathBytes) out.path.push_back(char(c));  // the rest of an over-long line is dropped
    }
    if (!any) return false;  // end of stream
    if (length <= kMaxPathBytes && !out.path.empty() && out.path.back() == '\r') out.path.pop_back(), --length;
    if (length == 0) continue;  // blank line
    if (length > kMaxPathBytes) {
      out.path.resize(256);
      out.path += "...";
      out.error = "line of " + std::to_string(length) + " bytes is longer than a path may be (" +
                  std::to_string(kMaxPathBytes) + "); not read as a file name";
    } else if (nul) {
      out.error = "line holds a NUL byte, which no file name can; not read as a file name";
    }
    return true;
  }
}

}  // namespace scanner
