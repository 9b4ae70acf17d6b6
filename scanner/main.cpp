// skipgan_scanner: screen images with a skipgan export (TorchScript .pt or AOTInductor .pt2), no Python.
//
//   paths (args or stdin) -> OrderedDecoder (worker threads, in input order) -> batches of one image shape
//   -> the exported pipeline (resize, normalise, probes, G, D, score inside) -> one JSON line per image
//
// A batch holds images of one sample type and size (the export resizes inside, but a tensor has one shape): a
// different shape, a full batch, an undecodable image (its error line must keep input order) or, reading stdin,
// --flush-ms without a new image scores what is waiting.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "options.h"
#include "ordered_decoder.h"
#include "path_lines.h"
#include "regions.h"
#include "screening_model.h"

namespace {

using scanner::Decoded;

struct Counts {
  size_t scored = 0, failed = 0;
};

void print_line(const nlohmann::json& line) {
  std::fputs(scanner::output_line(line).c_str(), stdout);
  std::fflush(stdout);
}

void print_error(const std::string& path, const std::string& error, Counts& counts) {
  print_line({{"path", path}, {"error", error}});
  ++counts.failed;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The reason in a libtorch error: TorchScript puts its interpreter traceback first and the raised message last.
std::string reason(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const auto nl = text.find_last_of('\n');
  return nl == std::string::npos ? text : text.substr(nl + 1);
}

// The regions' contour threshold when the flagged images' lines list regions (--max-regions > 0, a file that returns
// maps and a calibrated map threshold), else nullopt.
std::optional<float> regions_threshold(const scanner::ScreeningModel& model, const scanner::Options& o) {
  if (o.max_regions <= 0 || !model.has_maps()) return std::nullopt;
  return scanner::map_threshold(o.model, model.metadata());
}

void score_batch(scanner::ScreeningModel& model, const scanner::Options& o, std::optional<float> region_threshold,
                 std::vector<Decoded>& batch, Counts& counts) {
  if (batch.empty()) return;
  std::vector<at::Tensor> images;
  for (const auto& d : batch) images.push_back(d.image);
  scanner::Outputs out;
  try {
    c10::InferenceMode guard;
    out = model.run(at::stack(images), region_threshold.has_value());
  } catch (const std::exception& e) {  // the model refused this batch (e.g. channels): every image in it says why
    for (const auto& d : batch) print_error(d.path, "cannot score: " + reason(e), counts);
    batch.clear();
    return;
  }
  const float* s = out.scores.data_ptr<float>();
  const float* z = out.normalised.data_ptr<float>();
  const bool* v = out.verdicts.data_ptr<bool>();
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!std::isfinite(s[i])) {  // never a silent "normal" (as `skipgan score`)
      print_error(batch[i].path, "non-finite score (" + std::to_string(s[i]) + "): the image holds NaN/Inf values "
                  "or overflowed the model; it was not scored", counts);
      continue;
    }
    // z and v: the graph's outputs, skipgan.scoring.verdicts traced into the export; --threshold applies its rule
    const bool abnormal = o.threshold ? s[i] > *o.threshold : v[i];
    nlohmann::json line = {{"path", batch[i].path}, {"score", double(s[i])}, {"normalised_score", double(z[i])},
                           {"verdict", abnormal ? "abnormal" : "normal"}};
    if (abnormal && region_threshold && out.maps.defined()) {  // where, in the image's own pixels
      const at::Tensor m = out.maps[int64_t(i)];
      const auto& image = batch[i].image;  // [C, H, W] as decoded: the export resizes inside
      line["regions"] = scanner::regions_json(scanner::find_regions(
          m.data_ptr<float>(), m.size(0), m.size(1), *region_threshold, image.size(1), image.size(2), o.max_regions));
    }
    print_line(line);
    ++counts.scored;
  }
  batch.clear();
}

bool same_shape(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes();
}

int run(const scanner::Options& o) {
  auto model = scanner::ScreeningModel::load(o.model, o.device);
  const std::optional<float> region_threshold = regions_threshold(*model, o);
  if (o.threads) at::set_num_threads(o.threads);
  const int workers = o.workers ? o.workers : int(std::min(4u, std::max(1u, std::thread::hardware_concurrency())));
  std::vector<std::string> paths;
  if (!o.from_stdin) paths = scanner::collect_paths(o.inputs);

  scanner::OrderedDecoder decoder(workers, size_t(4) * o.batch_size, o.limits);
  std::thread feeder([&] {  // paths -> decoder; blocks while the decode window is full
    if (o.from_stdin) {
      scanner::PathLineReader lines(std::cin);
      for (scanner::PathLine line; lines.next(line);) decoder.push(std::move(line.path), std::move(line.error));
    } else {
      for (const auto& p : paths) decoder.push(p);
    }
    decoder.close();
  });

  Counts counts;
  std::vector<Decoded> batch;
  const auto t0 = std::chrono::steady_clock::now();
  const auto wait = o.from_stdin ? std::chrono::milliseconds(o.flush_ms) : std::chrono::milliseconds(3600 * 1000);
  for (;;) {
    Decoded d;
    const auto status = decoder.next(d, wait);
    if (status == scanner::OrderedDecoder::Status::timeout) {
      score_batch(*model, o, region_threshold, batch, counts);
      continue;
    }
    if (status == scanner::OrderedDecoder::Status::finished) break;
    if (!d.error.empty()) {
      score_batch(*model, o, region_threshold, batch, counts);  // keep input order
      print_error(d.path, d.error, counts);
      continue;
    }
    if (!batch.empty() && !same_shape(batch.front().image, d.image))
      score_batch(*model, o, region_threshold, batch, counts);
    batch.push_back(std::move(d));
    if (int(batch.size()) == o.batch_size) score_batch(*model, o, region_threshold, batch, counts);
  }
  score_batch(*model, o, region_threshold, batch, counts);
  feeder.join();

  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "scored %zu image(s) in %.2f s (%.1f images/s, %s)%s\n", counts.scored, dt,
               dt > 0 ? counts.scored / dt : 0.0, o.model.c_str(),
               counts.failed ? ("; " + std::to_string(counts.failed) + " could not be scored").c_str() : "");
  return counts.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto o = scanner::parse_options(argc, argv);
    if (!o) {
      std::fputs(scanner::kUsage, stdout);
      return 0;
    }
    return run(*o);
  } catch (const scanner::UsageError& e) {
    std::fprintf(stderr, "skipgan_scanner: error: %s\n", e.what());
    return 2;
  } catch (const scanner::ModelError& e) {
    std::fprintf(stderr, "skipgan_scanner: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "skipgan_scanner: error: %s\n", first_line(e.what()).c_str());
    return 2;
  }
}
