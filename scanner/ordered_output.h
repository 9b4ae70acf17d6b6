// The scanner's JSON lines, printed in input order, with the map files of a line (--maps) written on worker threads:
// a line waits until its files are in place (a consumer that reads a line can open its files), and scoring never
// waits for a file unless too many lines are pending.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace scanner {

class OrderedOutput {
 public:
  // writers: threads that write map files; max_pending: lines held before line() waits for the oldest.
  OrderedOutput(int writers, size_t max_pending);
  ~OrderedOutput();

  // A line with nothing to write: printed as soon as every line before it is.
  void line(nlohmann::json line);
  // A line whose files `write` puts in place (on a writer thread; it throws on failure, and the line then carries
  // "map_error" instead of "map").
  void line_with_files(nlohmann::json line, std::function<void()> write);
  // Wait for every file, print every line. Returns how many lines reported a map error.
  size_t finish();

 private:
  struct Pending {
    nlohmann::json line;
    std::future<std::string> error;  // "" when the files were written
    bool has_files;
  };
  void print_ready(bool wait);
  void worker();

  std::deque<Pending> pending_;
  size_t max_pending_, map_errors_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<std::string()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Prints one JSON line to stdout (skipgan's spelling: invalid UTF-8 replaced).
void print_line(const nlohmann::json& line);

}  // namespace scanner
