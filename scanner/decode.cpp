#include "decode.h"

#include <memory>
#include <vector>

#include <ATen/ATen.h>

namespace scanner {

at::Tensor to_tensor(DecodedImage&& image) {
  const at::ScalarType type = image.type == SampleType::u8    ? at::kByte
                              : image.type == SampleType::u16 ? at::kUInt16
                                                              : at::kFloat;
  // The tensor takes the decoded samples over instead of copying them (an 8k x 8k 16-bit X-ray is 128 MB): it owns
  // the vector and frees it with itself.
  auto owner = std::make_unique<std::vector<uint8_t>>(std::move(image.samples));
  void* data = owner->data();
  at::Tensor out = at::from_blob(data, {image.channels, image.height, image.width},
                                 [p = owner.get()](void*) { delete p; }, at::TensorOptions().dtype(type));
  owner.release();  // now the tensor's
  return out;
}

at::Tensor decode_image(const std::string& path, const ImageLimits& limits) {
  return to_tensor(decode_file(path, limits));
}

}  // namespace scanner
