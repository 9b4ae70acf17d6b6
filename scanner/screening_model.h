// An exported skipgan screening model: TorchScript (.pt, torch::jit::load) or AOTInductor (.pt2,
// AOTIModelPackageLoader). Both hold the whole pipeline (resize, normalise, probes, G, D, score) and its metadata.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "export_metadata.h"  // ModelError, parse_metadata, checked_device

namespace scanner {

struct Outputs {
  at::Tensor scores, normalised, verdicts;  // [B] fp32, fp32, bool (CPU)
  at::Tensor maps;  // [B, isize, isize] fp32 anomaly maps in σ units (CPU), when asked for and the file has them
};

class ScreeningModel {
 public:
  virtual ~ScreeningModel() = default;
  // images [B, C, H, W] as decoded (uint8 / uint16 / float32), on any device. Throws on a batch the model refuses.
  // with_maps: also the anomaly maps (only where has_maps()).
  virtual Outputs run(const at::Tensor& images, bool with_maps = false) = 0;
  // Whether the file can return anomaly maps: a TorchScript export always (score_with_anomaly_map), an AOTInductor
  // package when exported with --maps.
  virtual bool has_maps() const = 0;
  const nlohmann::json& metadata() const { return metadata_; }
  c10::Device device() const { return device_; }

  // .pt -> TorchScript, .pt2 -> AOTInductor. `device`: "cpu", "cuda" or "" (the export's own device). A file
  // exported for another device is a ModelError (exit code 2) before anything is loaded onto a device.
  static std::unique_ptr<ScreeningModel> load(const std::string& path, const std::string& device);

 protected:
  ScreeningModel(nlohmann::json metadata, c10::Device device) : metadata_(std::move(metadata)), device_(device) {}
  nlohmann::json metadata_;
  c10::Device device_;
};

// The message a TorchScript graph raised (or any exception's): libtorch puts the interpreter's traceback first and the
// raised message last, prefixed by its Python type.
std::string raised_message(const std::exception& e);

}  // namespace scanner
