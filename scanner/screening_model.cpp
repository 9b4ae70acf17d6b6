#include "screening_model.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

namespace scanner {
namespace {

constexpr size_t kMaxMetadataBytes = size_t(16) << 20;
constexpr const char* kKey = "skipgan";  // the metadata's name in every export (skipgan/export/metadata.py)
// A TorchScript export's method returning the anomaly map as a fourth output (skipgan/export/pipeline.py)
constexpr const char* kMapMethod = "score_with_anomaly_map";
// A TorchScript export's own check of the machine it runs on (ScreeningPipeline.check_machine: an int8 file on a
// CPU whose u8s8 products would saturate raises); files of earlier versions have none
constexpr const char* kCheckMethod = "check_machine";


// The metadata of a TorchScript export, read from the archive without loading the module (so before any device
// is touched).
std::string torchscript_metadata(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  const std::string record = std::string("extra/") + kKey + ".json";
  if (!reader.hasRecord(record)) return "";
  // skipgan writes a few KiB; a hostile archive could claim gigabytes for this record
  if (reader.getRecordSize(record) > kMaxMetadataBytes)
    throw ModelError(path + ": export metadata of " + std::to_string(reader.getRecordSize(record)) +
                     " bytes is over the cap of " + std::to_string(kMaxMetadataBytes) + "; not a skipgan export");
  auto [data, size] = reader.getRecord(record);
  return std::string(static_cast<const char*>(data.get()), size);
}

Outputs to_outputs(const std::vector<at::Tensor>& t, bool with_maps) {
  if (t.size() < 3) throw std::runtime_error("the model returned " + std::to_string(t.size()) + " outputs, not 3");
  Outputs o{t[0].to(at::kCPU, at::kFloat), t[1].to(at::kCPU, at::kFloat), t[2].to(at::kCPU, at::kBool), {}};
  if (with_maps && t.size() > 3) o.maps = t[3].to(at::kCPU, at::kFloat).contiguous();
  return o;
}

class TorchScriptModel final : public ScreeningModel {
 public:
  TorchScriptModel(torch::jit::Module module, nlohmann::json meta, c10::Device device)
      : ScreeningModel(std::move(meta), device), module_(std::move(module)) {}

  Outputs run(const at::Tensor& images, bool with_maps) override {
    with_maps = with_maps && has_maps();
    std::vector<c10::IValue> args{images.to(device_)};
    const auto tuple = (with_maps ? module_.get_method(kMapMethod)(args) : module_.forward(args)).toTuple();
    std::vector<at::Tensor> out;
    for (const auto& v : tuple->elements()) out.push_back(v.toTensor());
    return to_outputs(out, with_maps);
  }

  bool has_maps() const override { return module_.find_method(kMapMethod).has_value(); }

 private:
  torch::jit::Module module_;
};

class AotiModel final : public ScreeningModel {
 public:
  AotiModel(std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader, nlohmann::json meta,
            c10::Device device)
      : ScreeningModel(std::move(meta), device), loader_(std::move(loader)) {}

  Outputs run(const at::Tensor& images, bool with_maps) override {
    // The graph fixed the channel count and sample type at export: say so instead of a shape-guard message.
    const auto& in = metadata_["input"];
    const std::string want = in.value("dtype", "uint8");
    const std::string got = images.scalar_type() == at::kByte     ? "uint8"
                            : images.scalar_type() == at::kUInt16 ? "uint16"
                                                                  : "float32";
    if (got != want)
      throw std::runtime_error(got + " image, but this AOTInductor export takes " + want +
                               " (re-export with --input-dtype " + got + ", or use the TorchScript export)");
    const int64_t channels = metadata_.value("channels", 0);
    if (images.size(1) != channels)
      throw std::runtime_error("image has " + std::to_string(images.size(1)) + " channels but the model takes " +
                               std::to_string(channels));
    return to_outputs(loader_->run({images.to(device_).contiguous()}), with_maps && has_maps());
  }

  bool has_maps() const override { return returns_anomaly_map(metadata_); }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

}  // namespace

std::string raised_message(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const auto nl = text.find_last_of('\n');
  text = nl == std::string::npos ? text : text.substr(nl + 1);
  for (const std::string prefix : {"builtins.RuntimeError: ", "RuntimeError: "})
    if (text.rfind(prefix, 0) == 0) return text.substr(prefix.size());
  return text;
}

std::unique_ptr<ScreeningModel> ScreeningModel::load(const std::string& path, const std::string& device) {
  if (!std::filesystem::is_regular_file(path))
    throw ModelError(path + ": no such model file; pass a .pt or .pt2 written by `skipgan export`");
  const std::string ext = std::filesystem::path(path).extension().string();
  try {
    if (ext == ".pt") {
      nlohmann::json meta = parse_metadata(path, torchscript_metadata(path));
      const c10::Device dev(checked_device(path, meta, device, "TorchScript file"));
      torch::jit::Module module = torch::jit::load(path, dev);
      module.eval();
      if (auto check = module.find_method(kCheckMethod)) {
        try {
          (*check)(std::vector<c10::IValue>{});
        } catch (const std::exception& e) {  // refused here, at load: one line, exit 2, not an error per image
          throw ModelError(path + ": " + raised_message(e));
        }
      }
      return std::make_unique<TorchScriptModel>(std::move(module), std::move(meta), dev);
    }
    if (ext == ".pt2") {
      auto loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
      const auto meta_map = loader->get_metadata();
      const auto it = meta_map.find(kKey);
      nlohmann::json meta = parse_metadata(path, it == meta_map.end() ? "" : it->second);
      const c10::Device dev(checked_device(path, meta, device, "AOTInductor package"));
      return std::make_unique<AotiModel>(std::move(loader), std::move(meta), dev);
    }
  } catch (const ModelError&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    throw ModelError(path + ": cannot load the model (" + msg + ")");
  }
  throw ModelError(path + ": unknown model type '" + ext + "'; pass a TorchScript .pt or AOTInductor .pt2 export");
}

}  // namespace scanner
