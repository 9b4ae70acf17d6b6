#include "decode.h"

#include <cstring>

#include <ATen/ATen.h>

namespace scanner {

at::Tensor to_tensor(DecodedImage&& image) {
  const at::ScalarType type = image.type == SampleType::u8    ? at::kByte
                              : image.type == SampleType::u16 ? at::kUInt16
                                                              : at::kFloat;
  at::Tensor out = at::empty({image.channels, image.height, image.width}, at::TensorOptions().dtype(type));
  std::memcpy(out.data_ptr(), image.samples.data(), image.samples.size());
  return out;
}

at::Tensor decode_image(const std::string& path, const ImageLimits& limits) {
  return to_tensor(decode_file(path, limits));
}

}  // namespace scanner
