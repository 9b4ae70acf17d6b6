// `skipgan_scanner -`: one image path per line from stdin. The stream is untrusted (a pipe from another program,
// a file of names): a line is taken only up to kMaxPathBytes, so an endless line cannot exhaust memory, and a line
// that cannot be a path becomes an error line for that line, in input order, never a stop.
#pragma once

#include <cstddef>
#include <istream>
#include <string>

#include <nlohmann/json.hpp>

namespace scanner {

constexpr size_t kMaxPathBytes = 4096;  // PATH_MAX on Linux

struct PathLine {
  std::string path;   // the line without its '\n' (and a Windows '\r'); cut to kMaxPathBytes when too long
  std::string error;  // why it is not a path; empty when it is one
};

class PathLineReader {
 public:
  explicit PathLineReader(std::istream& in) : in_(in) {}
  // The next non-empty line; false at the end of the stream.
  bool next(PathLine& out);

 private:
  std::istream& in_;
};

// One JSON line of the scanner's output. Paths are bytes, not always UTF-8: invalid sequences are written as
// U+FFFD instead of throwing (nlohmann's default), so no file name can stop a run.
inline std::string output_line(const nlohmann::json& line) {
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace scanner
