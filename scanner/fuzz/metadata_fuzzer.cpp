// The skipgan metadata of an export (.pt extra file, .pt2 metadata JSON): any bytes give the metadata or a
// ModelError; nlohmann's own exceptions (a field of the wrong type) escaping would be a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "export_metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json meta = scanner::parse_metadata("model.pt", text);
    for (const char* device : {"", "cpu", "cuda"}) {
      try {
        scanner::checked_device("model.pt", meta, device, "TorchScript file");
      } catch (const scanner::ModelError&) {
      }
    }
    // what the AOTInductor path reads after parsing
    if (meta.contains("input")) (void)meta["input"].value("dtype", std::string("uint8"));
    (void)meta.value("channels", int64_t(0));
  } catch (const scanner::ModelError&) {
  }
  return 0;
}
