// Decoding ahead of scoring on worker threads, results handed out in input order.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "image_limits.h"

namespace scanner {

struct Decoded {
  std::string path;
  at::Tensor image;   // [C, H, W] uint8 / uint16 / float32; undefined when `error` is set
  std::string error;  // why the file could not be decoded
};

class OrderedDecoder {
 public:
  // `window`: most images decoded but not yet taken (bounds memory while decoding runs ahead); `limits`: what
  // one image may cost (the rest is an error, never an allocation).
  OrderedDecoder(int workers, size_t window, ImageLimits limits = {});
  ~OrderedDecoder();
  OrderedDecoder(const OrderedDecoder&) = delete;
  OrderedDecoder& operator=(const OrderedDecoder&) = delete;

  // Blocks while `window` images are in flight. A non-empty `error` (a stdin line that is no path) is handed out
  // as that item's error, in its place, without decoding.
  void push(std::string path, std::string error = {});
  void close();                 // no more paths will come

  enum class Status { item, timeout, finished };
  // The next image in input order; `timeout` when it is not ready within `wait` (the scanner then flushes a
  // partial batch), `finished` after close() once every pushed image was taken.
  Status next(Decoded& out, std::chrono::milliseconds wait);

 private:
  void work();

  std::mutex mutex_;
  std::condition_variable changed_;
  struct Job {
    size_t index;
    std::string path, error;
  };
  std::deque<Job> todo_;
  std::map<size_t, Decoded> done_;
  size_t pushed_ = 0, taken_ = 0, window_;
  const ImageLimits limits_;
  bool closed_ = false, stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace scanner
