// Command line of skipgan_scanner.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "image_limits.h"

namespace scanner {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model;
  int batch_size = 32;
  int threads = 0;  // intra-op threads for scoring; 0 = libtorch's default
  int workers = 0;  // decoding threads; 0 = min(4, hardware threads)
  std::string device;  // "", "cpu" or "cuda"
  std::optional<double> threshold;
  int max_regions = 10;
  std::string maps_dir;      // --maps DIR: overlays (and raw maps) of flagged images, or of all with --maps-for all
  bool raw_maps = false;     // --raw-maps png16
  bool maps_for_all = false; // --maps-for all  // regions listed per flagged image (0: none); skipgan/regions.py DEFAULT_MAX_REGIONS
  int flush_ms = 50;  // stdin mode: score a partial batch when no new image arrived for this long
  bool from_stdin = false;
  ImageLimits limits;  // --max-pixels, --max-bytes
  std::vector<std::string> inputs;  // files and folders
};

extern const char* const kUsage;

// Throws UsageError with a one-line message naming the argument. Returns nullopt for --help.
std::optional<Options> parse_options(int argc, char** argv);

// Files as given; folders expanded recursively, sorted, to the image files inside (the Python CLI's rule).
std::vector<std::string> collect_paths(const std::vector<std::string>& inputs);

// The folder that --maps names files relative to (skipgan/cli/score_maps.py map_names): the deepest folder holding
// every input file (symbolic links resolved).
std::filesystem::path common_parent(const std::vector<std::string>& paths);

// `path` relative to `root` (resolved), the name of its files under --maps DIR (extension kept).
std::string map_name(const std::filesystem::path& root, const std::string& path);

}  // namespace scanner
