#include "ordered_output.h"

#include <chrono>
#include <cstdio>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "path_lines.h"  // output_line

namespace scanner {

void print_line(const nlohmann::json& line) {
  std::fputs(output_line(line).c_str(), stdout);
  std::fflush(stdout);
}

OrderedOutput::OrderedOutput(int writers, size_t max_pending) : max_pending_(std::max<size_t>(1, max_pending)) {
  for (int i = 0; i < writers; ++i) threads_.emplace_back([this] { worker(); });
}

OrderedOutput::~OrderedOutput() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void OrderedOutput::worker() {
#ifdef _OPENMP
  // ATen's operators in a map job run on this thread alone: an OpenMP team per writer would compete with the
  // scoring threads for the same cores (measured: bf16 scanner with maps of 5 % flagged images 0.83x -> see
  // benchmarks/RESULTS.md). omp_set_num_threads sets this thread's own ICV, not the scoring threads'.
  omp_set_num_threads(1);
#endif
  for (;;) {
    std::packaged_task<std::string()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void OrderedOutput::line(nlohmann::json line) {
  pending_.push_back({std::move(line), {}, false});
  print_ready(false);
}

void OrderedOutput::line_with_files(nlohmann::json line, std::function<void()> write) {
  std::packaged_task<std::string()> job([write = std::move(write)]() -> std::string {
    try {
      write();
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  });
  std::future<std::string> done = job.get_future();
  if (threads_.empty()) {
    job();
  } else {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  pending_.push_back({std::move(line), std::move(done), true});
  print_ready(false);
  while (pending_.size() > max_pending_) print_ready(true);  // bounded memory: wait for the oldest
}

void OrderedOutput::print_ready(bool wait) {
  while (!pending_.empty()) {
    Pending& p = pending_.front();
    if (p.has_files) {
      if (!wait && p.error.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
      const std::string error = p.error.get();
      if (!error.empty()) {
        p.line.erase("map");
        p.line["map_error"] = error;
        ++map_errors_;
      }
    }
    print_line(p.line);
    pending_.pop_front();
    wait = false;  // one line waited for; the rest only if ready
  }
}

size_t OrderedOutput::finish() {
  while (!pending_.empty()) print_ready(true);
  return map_errors_;
}

}  // namespace scanner
