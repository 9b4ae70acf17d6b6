#include "options.h"

#include <algorithm>
#include <filesystem>

#include "image_decode.h"

namespace scanner {

const char* const kUsage =
    "usage: skipgan_scanner --model FILE (.pt or .pt2) [--batch-size B] [--threads N] [--workers N]\n"
    "                       [--device cpu|cuda] [--threshold T] [--flush-ms MS] [--max-pixels N]\n"
    "                       [--max-bytes N] [--max-regions N] [--maps DIR [--raw-maps png16]\n"
    "                       [--maps-for flagged|all]] (DIR | FILE... | -)\n"
    "\n"
    "Scores images with a model exported by `skipgan export` and prints one JSON line per image:\n"
    "  {\"path\", \"score\", \"normalised_score\", \"verdict\"}  or  {\"path\", \"error\"}\n"
    "PNG (8/16-bit), PGM/PPM and TIFF; `-` reads one path per line from stdin and scores as paths arrive\n"
    "(a full batch, or --flush-ms without a new path, scores what has arrived).\n"
    "--device: where the model runs, default the device it was exported for (`skipgan export --device`); a file\n"
    "exported for another device is refused.\n"
    "--max-pixels (default 134217728), --max-bytes (decoded bytes, default 1073741824): an image over a cap is an\n"
    "error line naming it, checked from its header before anything is allocated (the same caps as `skipgan score`).\n"
    "--max-regions N (default 10; 0: none): a flagged image's line lists up to N regions of its anomaly map above\n"
    "the calibrated threshold, largest peak first: {\"bbox\": [x, y, w, h] in the image's pixels, \"area\", \"peak\",\n"
    "\"mean\"} (σ units), as `skipgan score` does; a .pt2 needs `skipgan export --maps` for them.\n"
    "--maps DIR: per flagged image (all with --maps-for all) DIR/<path>.map.png, the image with its anomaly map\n"
    "as a heatmap and the contour at the calibrated threshold, the same pixels as `skipgan score --maps`; with\n"
    "--raw-maps png16 also DIR/<path>.raw.png (16-bit, value = round(1000·map) + 32768). <path>: relative to the\n"
    "inputs' common folder (stdin: the absolute path). Written on worker threads; a line follows its files.\n"
    "Exit codes: 0 every image scored, 1 some images could not be scored, 2 usage or model error.\n";

namespace {

long long to_integer(const std::string& flag, const std::string& v, long long min, long long max) {
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || n < min || n > max)
    throw UsageError(flag + " " + v + ": expected an integer from " + std::to_string(min) + " to " +
                     std::to_string(max));
  return n;
}

int to_int(const std::string& flag, const std::string& v, int min) {
  return int(to_integer(flag, v, min, 1 << 30));
}

}  // namespace

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + ": needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") return std::nullopt;
    if (a == "--model") {
      o.model = value();
    } else if (a == "--batch-size") {
      o.batch_size = to_int(a, value(), 1);
    } else if (a == "--threads") {
      o.threads = to_int(a, value(), 1);
    } else if (a == "--workers") {
      o.workers = to_int(a, value(), 1);
    } else if (a == "--max-pixels") {  // at most side x side: the per-side cap bounds it anyway
      o.limits.max_pixels = to_integer(a, value(), 1, o.limits.max_side * o.limits.max_side);
    } else if (a == "--max-bytes") {
      o.limits.max_bytes = to_integer(a, value(), 1, int64_t(1) << 40);
    } else if (a == "--max-regions") {
      o.max_regions = int(to_integer(a, value(), 0, 1 << 30));
    } else if (a == "--maps") {
      o.maps_dir = value();
      if (o.maps_dir.empty()) throw UsageError("--maps: needs a folder");
    } else if (a == "--raw-maps") {
      const std::string v = value();
      if (v != "png16") throw UsageError("--raw-maps " + v + ": expected png16");
      o.raw_maps = true;
    } else if (a == "--maps-for") {
      const std::string v = value();
      if (v != "flagged" && v != "all") throw UsageError("--maps-for " + v + ": expected flagged or all");
      o.maps_for_all = v == "all";
    } else if (a == "--flush-ms") {
      o.flush_ms = to_int(a, value(), 1);
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda") throw UsageError("--device " + o.device + ": expected cpu or cuda");
    } else if (a == "--threshold") {
      const std::string v = value();
      size_t used = 0;
      try {
        o.threshold = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty()) throw UsageError("--threshold " + v + ": expected a number");
    } else if (a == "-") {
      o.from_stdin = true;
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError(a + ": unknown option (see --help)");
    } else {
      o.inputs.push_back(a);
    }
  }
  if ((o.raw_maps || o.maps_for_all) && o.maps_dir.empty())
    throw UsageError(std::string(o.raw_maps ? "--raw-maps" : "--maps-for") + ": needs --maps DIR (the folder to "
                     "write the maps into)");
  std::error_code ec;
  if (!o.maps_dir.empty() && std::filesystem::exists(o.maps_dir, ec) && !std::filesystem::is_directory(o.maps_dir, ec))
    throw UsageError("--maps " + o.maps_dir + ": is a file; pass a folder to write the maps into");
  if (o.model.empty()) throw UsageError("--model FILE is required (a .pt or .pt2 from `skipgan export`)");
  if (o.from_stdin && !o.inputs.empty()) throw UsageError("-: read paths from stdin OR pass files/folders, not both");
  if (!o.from_stdin && o.inputs.empty()) throw UsageError("no images: pass files, folders, or - to read paths from stdin");
  return o;
}

std::vector<std::string> collect_paths(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::recursive_directory_iterator(in, ec))
        if (e.is_regular_file() && is_image_path(e.path().string())) found.push_back(e.path());
      if (found.empty()) throw UsageError(in + ": folder holds no images (png, pgm, tif); pass image files or folders");
      std::sort(found.begin(), found.end());
      for (const auto& p : found) paths.push_back(p.string());
    } else if (fs::is_regular_file(in, ec)) {
      paths.push_back(in);
    } else {
      throw UsageError(in + ": no such file or folder; pass image files or folders of images");
    }
  }
  return paths;
}

std::filesystem::path common_parent(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  fs::path root;
  bool first = true;
  for (const auto& p : paths) {
    const fs::path parent = fs::weakly_canonical(p).parent_path();
    if (first) {
      root = parent, first = false;
      continue;
    }
    fs::path common;
    for (auto a = root.begin(), b = parent.begin(); a != root.end() && b != parent.end() && *a == *b; ++a, ++b)
      common /= *a;
    root = common;
  }
  return root;
}

std::string map_name(const std::filesystem::path& root, const std::string& path) {
  return std::filesystem::weakly_canonical(path).lexically_relative(root).string();
}

}  // namespace scanner
