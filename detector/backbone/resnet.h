// ResNet-101 v1 backbone as graph builders (faster_rcnn_spec.md §3.1, §9, §11): the first stage returns block3
// (1024 channels at stride 16, H_f = ceil(H/16)), the second stage runs block4 (3 units, 2048 channels) on the
// cropped ROI features. Every conv has no bias and is followed by a frozen batch norm (eps 1e-5).
//
// Two stride placements:
//   TfSlim (TF-OD's resnet_v1_101 with output_stride 16, what the zoo checkpoints were trained with):
//     stem   conv1 7x7/2 with explicit padding 3/3 (slim conv2d_same), BN, ReLU, max pool 3x3/2 TF SAME
//            (on even sizes 0 rows before, 1 after).
//     unit   1x1 (w) BN ReLU -> 3x3 (w, stride s, padding 1/1: conv2d_same) BN ReLU -> 1x1 (4w) BN, + shortcut, ReLU.
//            shortcut: depth changes -> 1x1 conv with stride s + BN; else s == 2 -> subsample (1x1 max pool,
//            stride 2); else identity.
//     stride 2 sits on the LAST unit of block1 and block2; block3's last unit runs at stride 1 (output stride 16
//            reached, dilation stays 1 in block3). block4 (second stage): all units stride 1.
//   Torchvision (torchvision.models.resnet101, "v1.5"):
//     stem   conv1 7x7/2 padding 3, BN, ReLU, MaxPool(3, 2, padding 1).
//     stride 2 on the 3x3 conv of the FIRST unit of layer2 and layer3 (layer1: 1), with a projection shortcut
//            (1x1 conv, stride, BN) on every first unit. block4: ResNetOptions::block4_stride (1 = the TF-OD C4
//            head; 2 = torchvision's own layer4).
//
// Parameter names are torchvision's for both placements (a state_dict of resnet101 loads by name):
//   conv1.weight, bn1.{weight,bias,running_mean,running_var},
//   layer{b}.{u}.conv{1,2,3}.weight, layer{b}.{u}.bn{1,2,3}.*, layer{b}.0.downsample.0.weight,
//   layer{b}.0.downsample.1.*   (b = 1..4, u = 0-based unit index)
// Mapping to TF-slim variables (spec §9; resnet_tf_slim_name() implements it). S1 = FirstStageFeatureExtractor,
// S2 = SecondStageFeatureExtractor, R = resnet_v1_101, U = block{b}/unit_{u+1}/bottleneck_v1:
//   conv1.weight                    S1/R/conv1/weights                 (TF stores HWIO: transpose to OIHW)
//   bn1.weight / bias               S1/R/conv1/BatchNorm/gamma / beta
//   bn1.running_mean / running_var  S1/R/conv1/BatchNorm/moving_mean / moving_variance
//   layer{b}.{u}.conv{k}.weight     S1/R/U/conv{k}/weights             (b = 1..3; layer4 -> S2/R/block4/...)
//   layer{b}.{u}.bn{k}.*            S1/R/U/conv{k}/BatchNorm/{gamma,beta,moving_mean,moving_variance}
//   layer{b}.0.downsample.0.weight  S1/R/block{b}/unit_1/bottleneck_v1/shortcut/weights
//   layer{b}.0.downsample.1.*       S1/R/block{b}/unit_1/bottleneck_v1/shortcut/BatchNorm/*
// The projection shortcut sits in unit 1 in both placements (that is where the depth changes), so the
// parameter sets are identical; only where the stride is applied differs (so TF weights do not give
// torchvision's function, and vice versa).
//
// Frozen parameters: BN running mean/var are always frozen; gamma/beta too unless bn_affine_trainable.
// A frozen parameter has Value::requires_grad = false: backward() creates no gradient for it, its ParamStore
// gradient stays zero, and the optimizer must not update it.
#pragma once
#include <array>
#include <string>

#include "nn/graph.h"

namespace ctdet {

enum class ResNetLayout { TfSlim, Torchvision };
const char* resnet_layout_name(ResNetLayout l);

struct ResNetOptions {
  ResNetLayout layout = ResNetLayout::TfSlim;
  int base_width = 64;                   // stem channels and block1's bottleneck width; block b: base_width << (b-1)
  int expansion = 4;                     // bottleneck output = expansion * width
  std::array<int, 4> units = {3, 4, 23, 3};
  double bn_eps = 1e-5;
  bool bn_affine_trainable = false;      // gamma / beta receive gradients (running statistics never do)
  int block4_stride = 1;                 // stride of block4 (second stage): 1 in TF-OD's C4 head

  static ResNetOptions resnet101(ResNetLayout layout);
  // A small network for CPU tests: base width 4, units {2,1,1,1} (identity, subsample and projection shortcuts).
  static ResNetOptions tiny(ResNetLayout layout);

  int width(int block) const { return base_width << (block - 1); }          // block = 1..4
  int out_channels(int block) const { return expansion * width(block); }
};

// Intermediate outputs of the first stage (for tests and feature taps).
struct ResNetTaps {
  ValueId stem = kNoValue;  // after the max pool (stride 4)
  ValueId block1 = kNoValue, block2 = kNoValue, block3 = kNoValue;
};

class ResNetBackbone {
 public:
  explicit ResNetBackbone(ResNetOptions opt);
  const ResNetOptions& options() const { return opt_; }

  // image (N,3,H,W) -> block3 (N, 4*4*base_width, ceil(H/16), ceil(W/16)).
  ValueId first_stage(Graph& g, ValueId image, ResNetTaps* taps = nullptr) const;
  // crops (R, out_channels(3), h, w) -> block4 (R, out_channels(4), ceil(h/block4_stride), ...).
  ValueId second_stage(Graph& g, ValueId crops) const;

  int first_stage_channels() const { return opt_.out_channels(3); }
  int second_stage_channels() const { return opt_.out_channels(4); }

 private:
  ValueId unit(Graph& g, ValueId x, int block, int u, int stride) const;
  ValueId conv_bn(Graph& g, ValueId x, const std::string& conv_name, const std::string& bn_name, int out_ch, int k,
                  int stride, int pad) const;
  ValueId conv_bn_relu(Graph& g, ValueId x, const std::string& conv_name, const std::string& bn_name,
                       const std::string& relu_name, int out_ch, int k, int stride, int pad,
                       ValueId residual = kNoValue) const;
  ResNetOptions opt_;
};

// A parameter that receives no gradient (see above). Shared by name like Graph::param.
ValueId frozen_param(Graph& g, const std::string& name, const Shape& shape);

// torchvision parameter name -> TF-slim variable name (table above). Throws ctdet::Error naming the
// parameter when it is not a ResNet trunk parameter.
std::string resnet_tf_slim_name(const std::string& torch_name);

}  // namespace ctdet
