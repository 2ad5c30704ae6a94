// The MLP's shape and parameter layout (SPEC §1), shared by every compiled engine.
#pragma once
#include <cstdint>
#include <vector>

#include "check.h"

namespace pyhessk {

struct MlpShape {
  std::vector<int> sizes;        // [n0, n1, ..., nL]
  std::vector<int> acts;         // activation id of each hidden layer (length L − 1)
  int loss = 0;                  // loss id
  double l2 = 0;                 // weight decay λ (weights only)
  bool mean = true;              // reduction: mean (true) or sum
  bool bias = true;              // layers have biases
  std::vector<int64_t> w_off;    // start of W_l in θ, l = 1..L (index l − 1)
  std::vector<int64_t> b_off;    // start of b_l in θ
  int64_t num_params = 0;        // N

  MlpShape() = default;
  MlpShape(std::vector<int> sizes_, std::vector<int> acts_, int loss_, double l2_, bool mean_, bool bias_)
      : sizes(std::move(sizes_)), acts(std::move(acts_)), loss(loss_), l2(l2_), mean(mean_), bias(bias_) {
    PYHESSK_CHECK(sizes.size() >= 2, "sizes needs at least two widths");
    PYHESSK_CHECK(acts.size() + 2 == sizes.size(), "need one activation id per hidden layer");
    for (int s : sizes) PYHESSK_CHECK(s >= 1, "every layer needs at least one unit");
    int64_t pos = 0;
    for (int l = 1; l < int(sizes.size()); ++l) {
      w_off.push_back(pos);
      pos += int64_t(sizes[l]) * sizes[l - 1];
      b_off.push_back(pos);
      if (bias) pos += sizes[l];
    }
    num_params = pos;
  }
  int layers() const { return int(sizes.size()) - 1; }
  int out_dim() const { return sizes.back(); }
  int max_width() const {
    int m = 0;
    for (int s : sizes) m = s > m ? s : m;
    return m;
  }
};

}  // namespace pyhessk
