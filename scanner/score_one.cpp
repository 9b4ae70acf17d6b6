// The smallest C++ use of a skipgan export (docs/deployment.md): score one image file.
//   score_one MODEL.pt IMAGE
#include <iostream>

#include <c10/core/InferenceMode.h>
#include <torch/script.h>

#include "decode.h"  // scanner::decode_image: PNG / PGM / TIFF file -> [C, H, W] uint8 / uint16 / float

int main(int argc, char** argv) {
  if (argc != 3) return std::cerr << "usage: score_one MODEL.pt IMAGE\n", 2;
  torch::jit::Module model = torch::jit::load(argv[1]);            // finds torch.ops.skipgan: libskipgan_ops linked
  at::Tensor image = scanner::decode_image(argv[2]).unsqueeze(0);  // [1, C, H, W] at the file's own size
  c10::InferenceMode guard;
  auto out = model.forward({image}).toTuple()->elements();         // resize, normalise, probes, G, D, score inside
  double score = out[0].toTensor().item<double>();                 // outputs: scores, normalised scores, verdicts
  bool abnormal = out[2].toTensor().item<bool>();                  // score > the model's calibrated threshold
  std::cout << argv[2] << ": score " << score << (abnormal ? ", abnormal\n" : ", normal\n");
}
