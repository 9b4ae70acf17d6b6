#include "export_metadata.h"

#include <algorithm>

namespace scanner {
namespace {

constexpr const char* kFormat = "skipgan-export";
constexpr int kFormatVersion = 1;

// A string field, or ModelError: json::value() would throw nlohmann's type_error on a hostile file (a number
// where a string belongs), which is not a message a user can act on.
std::string string_field(const std::string& path, const nlohmann::json& meta, const char* key, const char* dflt) {
  const auto it = meta.find(key);
  if (it == meta.end()) return dflt;
  if (!it->is_string())
    throw ModelError(path + ": export metadata field '" + key + "' is not a string; re-export with `skipgan export`");
  return it->get<std::string>();
}

}  // namespace

nlohmann::json parse_metadata(const std::string& path, const std::string& text) {
  // Depth is bounded by nlohmann's recursive parser only through the stack: refuse absurd nesting first.
  int depth = 0, deepest = 0;
  for (const char c : text) {
    if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  if (deepest > 64)
    throw ModelError(path + ": export metadata is nested " + std::to_string(deepest) +
                     " levels deep; not a skipgan export");
  nlohmann::json meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object() || string_field(path, meta, "format", "") != kFormat)
    throw ModelError(path + ": not a skipgan export (no skipgan metadata); make one with `skipgan export`");
  const auto version = meta.find("format_version");
  if (version == meta.end() || !version->is_number_integer() || version->get<int64_t>() != kFormatVersion)
    throw ModelError(path + ": export format version " +
                     (version == meta.end() ? std::string("(none)")
                                            : version->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) +
                     " is not supported (this scanner reads version " + std::to_string(kFormatVersion) +
                     "); re-export with a matching skipgan");
  // Fields the scanner reads later, type-checked once here.
  string_field(path, meta, "device", "cpu");
  if (meta.contains("channels") && !meta["channels"].is_number_integer())
    throw ModelError(path + ": export metadata field 'channels' is not an integer; re-export with `skipgan export`");
  if (meta.contains("input")) {
    if (!meta["input"].is_object())
      throw ModelError(path + ": export metadata field 'input' is not an object; re-export with `skipgan export`");
    string_field(path, meta["input"], "dtype", "uint8");
  }
  if (meta.contains("outputs")) {
    const auto& outputs = meta["outputs"];
    if (!outputs.is_array() || !std::all_of(outputs.begin(), outputs.end(), [](const auto& v) { return v.is_string(); }))
      throw ModelError(path + ": export metadata field 'outputs' is not a list of names; re-export with `skipgan export`");
  }
  map_threshold(path, meta);
  return meta;
}

std::optional<float> map_threshold(const std::string& path, const nlohmann::json& meta) {
  const auto it = meta.find("anomaly_map");
  if (it == meta.end() || it->is_null()) return std::nullopt;
  if (!it->is_object())
    throw ModelError(path + ": export metadata field 'anomaly_map' is not an object; re-export with `skipgan export`");
  const auto t = it->find("threshold");
  if (t == it->end() || t->is_null()) return std::nullopt;
  if (!t->is_number())
    throw ModelError(path + ": export metadata field 'anomaly_map.threshold' is not a number; re-export with "
                     "`skipgan export`");
  return t->get<float>();
}

bool returns_anomaly_map(const nlohmann::json& meta) {
  const auto it = meta.find("outputs");
  return it != meta.end() && it->is_array() && it->size() > 3 && (*it)[3] == "anomaly_map";
}

std::string checked_device(const std::string& path, const nlohmann::json& meta, const std::string& device,
                           const std::string& what) {
  const std::string exported = string_field(path, meta, "device", "cpu");
  if (exported != "cpu" && exported != "cuda")
    throw ModelError(path + ": export metadata names device '" + exported + "' (expected cpu or cuda)");
  if (!device.empty() && device != exported)
    throw ModelError(path + ": this " + what + " was exported for " + exported + " (skipgan export --device " +
                     exported + "), so it cannot run on --device " + device + "; re-export it with `skipgan export "
                     "--device " + device + "`");
  return exported;
}

}  // namespace scanner
