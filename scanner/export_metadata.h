// The skipgan metadata of an export (the JSON written by skipgan/export/metadata.py into a .pt's extra files or a
// .pt2's metadata): untrusted bytes until parsed here. No libtorch, so scanner/fuzz/ runs exactly this code.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace scanner {

// The model file cannot be used (missing, not an export, wrong version): a usage error, exit code 2.
struct ModelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The metadata object, or ModelError naming `path`: not JSON, not an object, not a skipgan export, another
// format version, or fields of the wrong type.
nlohmann::json parse_metadata(const std::string& path, const std::string& text);

// The device contract (skipgan/export/metadata.py check_device): an export runs on the device it was exported
// for, and a mismatch is one clear error before anything is loaded onto a device. Returns the device to run on:
// the export's own when `device` (--device) is empty.
std::string checked_device(const std::string& path, const nlohmann::json& meta, const std::string& device,
                           const std::string& what);

// The anomaly map's contour threshold (metadata "anomaly_map"."threshold", σ units) where regions start; nullopt
// for exports from before it or of models without a calibrated map.
std::optional<float> map_threshold(const std::string& path, const nlohmann::json& meta);

// Whether the graph returns the anomaly map as its fourth output (metadata "outputs", `skipgan export --maps`).
bool returns_anomaly_map(const nlohmann::json& meta);

}  // namespace scanner
