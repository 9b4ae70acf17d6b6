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
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "image_encode.h"
#include "options.h"
#include "ordered_decoder.h"
#include "ordered_output.h"
#include "overlay.h"
#include "path_lines.h"
#include "regions.h"
#include "screening_model.h"

namespace {

using scanner::Decoded;

struct Counts {
  size_t scored = 0, failed = 0;
};

// What a run needs besides the batch: the model, the options, the output in input order and the map settings.
struct Run {
  scanner::ScreeningModel& model;
  const scanner::Options& o;
  scanner::OrderedOutput& output;
  std::optional<float> map_threshold;     // the map's contour threshold (overlays, regions); nullopt: none calibrated
  bool regions = false;                   // flagged lines list regions
  bool maps = false;                      // the model is asked for its maps (regions or --maps)
  std::filesystem::path maps_root;        // --maps: files are named by their path relative to this folder
  Counts counts;
};

void print_error(Run& run, const std::string& path, const std::string& error) {
  run.output.line({{"path", path}, {"error", error}});
  ++run.counts.failed;
}

// --maps: the overlay (and raw map) of one image, on a writer thread; the line names the overlay.
void add_map_files(Run& run, nlohmann::json& line, const Decoded& d, const at::Tensor& map) {
  const std::string name = scanner::map_name(run.maps_root, d.path);
  const auto dir = std::filesystem::path(run.o.maps_dir);
  const std::string overlay = (dir / (name + ".map.png")).string();
  const std::string raw = run.o.raw_maps ? (dir / (name + ".raw.png")).string() : "";
  line["map"] = overlay;
  const at::Tensor image = d.image;
  const std::optional<float> threshold = run.map_threshold;
  run.output.line_with_files(line, [image, map = map.clone(), threshold, overlay, raw] {
    const at::Tensor full = scanner::map_at_size(map, image.size(1), image.size(2));
    const at::Tensor px = scanner::render_overlay(image, full, threshold);
    scanner::write_png_atomic(overlay, px.data_ptr(), px.size(1), px.size(0), 3, 8);
    if (!raw.empty()) {
      const at::Tensor v = scanner::encode_png16(full);
      scanner::write_png_atomic(raw, v.data_ptr(), v.size(1), v.size(0), 1, 16);
    }
  });
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

void score_batch(Run& run, std::vector<Decoded>& batch) {
  if (batch.empty()) return;
  const scanner::Options& o = run.o;
  std::vector<at::Tensor> images;
  for (const auto& d : batch) images.push_back(d.image);
  scanner::Outputs out;
  try {
    c10::InferenceMode guard;
    out = run.model.run(at::stack(images), run.maps);
  } catch (const std::exception& e) {  // the model refused this batch (e.g. channels): every image in it says why
    for (const auto& d : batch) print_error(run, d.path, "cannot score: " + scanner::raised_message(e));
    batch.clear();
    return;
  }
  const float* s = out.scores.data_ptr<float>();
  const float* z = out.normalised.data_ptr<float>();
  const bool* v = out.verdicts.data_ptr<bool>();
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!std::isfinite(s[i])) {  // never a silent "normal" (as `skipgan score`)
      print_error(run, batch[i].path, "non-finite score (" + std::to_string(s[i]) + "): the image holds NaN/Inf "
                  "values or overflowed the model; it was not scored");
      continue;
    }
    // z and v: the graph's outputs, skipgan.scoring.verdicts traced into the export; --threshold applies its rule
    const bool abnormal = o.threshold ? s[i] > *o.threshold : v[i];
    nlohmann::json line = {{"path", batch[i].path}, {"score", double(s[i])}, {"normalised_score", double(z[i])},
                           {"verdict", abnormal ? "abnormal" : "normal"}};
    const at::Tensor m = out.maps.defined() ? out.maps[int64_t(i)] : at::Tensor();
    if (abnormal && run.regions && m.defined()) {  // where, in the image's own pixels
      const auto& image = batch[i].image;  // [C, H, W] as decoded: the export resizes inside
      line["regions"] = scanner::regions_json(scanner::find_regions(
          m.data_ptr<float>(), m.size(0), m.size(1), *run.map_threshold, image.size(1), image.size(2),
          o.max_regions));
    }
    if (!o.maps_dir.empty() && m.defined() && (abnormal || o.maps_for_all))
      add_map_files(run, line, batch[i], m);
    else
      run.output.line(std::move(line));
    ++run.counts.scored;
  }
  batch.clear();
}

bool same_shape(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes();
}

int run(const scanner::Options& o) {
  auto model = scanner::ScreeningModel::load(o.model, o.device);
  if (!o.maps_dir.empty() && !model->has_maps())
    throw scanner::ModelError("--maps " + o.maps_dir + ": " + o.model + " returns no anomaly map (an AOTInductor "
                              "package exported without --maps); re-export it with `skipgan export --maps`, or use "
                              "the TorchScript export");
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

  scanner::OrderedOutput output(o.maps_dir.empty() ? 0 : 2, size_t(4) * o.batch_size);
  Run r{*model, o, output, scanner::map_threshold(o.model, model->metadata())};
  r.regions = o.max_regions > 0 && model->has_maps() && r.map_threshold.has_value();
  r.maps = r.regions || !o.maps_dir.empty();
  if (!o.maps_dir.empty()) r.maps_root = o.from_stdin ? std::filesystem::path("/") : scanner::common_parent(paths);
  std::vector<Decoded> batch;
  const auto t0 = std::chrono::steady_clock::now();
  const auto wait = o.from_stdin ? std::chrono::milliseconds(o.flush_ms) : std::chrono::milliseconds(3600 * 1000);
  for (;;) {
    Decoded d;
    const auto status = decoder.next(d, wait);
    if (status == scanner::OrderedDecoder::Status::timeout) {
      score_batch(r, batch);
      continue;
    }
    if (status == scanner::OrderedDecoder::Status::finished) break;
    if (!d.error.empty()) {
      score_batch(r, batch);  // keep input order
      print_error(r, d.path, d.error);
      continue;
    }
    if (!batch.empty() && !same_shape(batch.front().image, d.image))
      score_batch(r, batch);
    batch.push_back(std::move(d));
    if (int(batch.size()) == o.batch_size) score_batch(r, batch);
  }
  score_batch(r, batch);
  feeder.join();
  const size_t map_errors = output.finish();
  const Counts& counts = r.counts;
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string tail;
  if (counts.failed) tail += "; " + std::to_string(counts.failed) + " could not be scored";
  if (map_errors) tail += "; " + std::to_string(map_errors) + " map file(s) could not be written (map_error)";
  std::fprintf(stderr, "scored %zu image(s) in %.2f s (%.1f images/s, %s)%s\n", counts.scored, dt,
               dt > 0 ? counts.scored / dt : 0.0, o.model.c_str(), tail.c_str());
  if (map_errors) return 1;
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
