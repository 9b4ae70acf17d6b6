#include "ordered_decoder.h"

#include <exception>

#include "decode.h"

namespace scanner {

OrderedDecoder::OrderedDecoder(int workers, size_t window, ImageLimits limits)
    : window_(window < 1 ? 1 : window), limits_(limits) {
  for (int i = 0; i < (workers < 1 ? 1 : workers); ++i) threads_.emplace_back([this] { work(); });
}

OrderedDecoder::~OrderedDecoder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& t : threads_) t.join();
}

void OrderedDecoder::push(std::string path, std::string error) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return pushed_ - taken_ < window_ || stopping_; });
  todo_.push_back({pushed_++, std::move(path), std::move(error)});
  changed_.notify_all();
}

void OrderedDecoder::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  changed_.notify_all();
}

OrderedDecoder::Status OrderedDecoder::next(Decoded& out, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto ready = [&] { return done_.count(taken_) || (closed_ && taken_ == pushed_); };
  if (!changed_.wait_for(lock, wait, ready)) return Status::timeout;
  if (!done_.count(taken_)) return Status::finished;
  auto node = done_.extract(taken_++);
  out = std::move(node.mapped());
  changed_.notify_all();  // a producer may be waiting for room in the window
  return Status::item;
}

void OrderedDecoder::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return !todo_.empty() || stopping_; });
      if (stopping_) return;
      job = std::move(todo_.front());
      todo_.pop_front();
    }
    Decoded d{job.path, {}, job.error};
    if (d.error.empty()) {
      try {
        d.image = decode_image(job.path, limits_);
      } catch (const std::exception& e) {  // DecodeError, or std::bad_alloc below the caps: this image's error
        d.error = e.what();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(job.index, std::move(d));
    }
    changed_.notify_all();
  }
}

}  // namespace scanner
