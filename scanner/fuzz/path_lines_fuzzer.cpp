// `skipgan_scanner -` reads paths from stdin: any bytes must give lines of bounded length and JSON output lines
// (invalid UTF-8 included) without an exception.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "path_lines.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  scanner::PathLineReader reader(in);
  size_t lines = 0;
  for (scanner::PathLine line; reader.next(line);) {
    if (line.path.empty() || line.path.size() > scanner::kMaxPathBytes) __builtin_trap();
    if (line.error.empty() && line.path.find('\0') != std::string::npos) __builtin_trap();
    const std::string out = scanner::output_line({{"path", line.path}, {"error", line.error}});
    if (out.empty() || out.back() != '\n') __builtin_trap();
    if (++lines > size) __builtin_trap();  // every line consumed at least one byte
  }
  return 0;
}
