// BN-Inception / Inception-v2 backbone (TF-slim inception_v2 as TF-OD's faster_rcnn_inception_v2 uses it,
// faster_rcnn_spec.md §3.2, §9, §10) as graph builders. The first stage is inception_v2_base up to Mixed_4e
// (stride 16, H_f = ceil(H/16)); the second stage rebuilds Mixed_5a..Mixed_5c on the cropped ROI features
// (7x7 -> 4x4).
//
// Layers (every conv: no bias, frozen BN (eps 1e-3, gamma present: TF-OD sets batch_norm_scale=True), ReLU;
// every conv and pool: TF SAME padding, asymmetric on stride 2, extra row/column at the bottom/right):
//   Conv2d_1a_7x7   separable: depthwise 7x7/2 with channel multiplier m = min(depth(64)/3, 8) (3 -> 3m
//                   channels, no BN/ReLU), then pointwise 1x1 -> depth(64), BN, ReLU
//   MaxPool_2a_3x3  max 3x3/2
//   Conv2d_2b_1x1   depth(64);  Conv2d_2c_3x3  depth(192)
//   MaxPool_3a_3x3  max 3x3/2
//   Mixed_3b..4e, Mixed_5a..5c   four-branch modules, concatenated b0, b1, b2, b3 along channels:
//     Branch_0  Conv2d_0a_1x1                                  (4a/5a: then Conv2d_1a_3x3 /2)
//     Branch_1  Conv2d_0a_1x1 -> Conv2d_0b_3x3                 (4a/5a: then Conv2d_1a_3x3 /2)
//     Branch_2  Conv2d_0a_1x1 -> Conv2d_0b_3x3 -> Conv2d_0c_3x3  (4a/5a: MaxPool_1a_3x3 /2 of the input)
//     Branch_3  AvgPool_0a_3x3 (Mixed_5c: MaxPool_0a_3x3) -> Conv2d_0b_1x1   (absent in 4a/5a)
//   Widths: the spec's table (§3.2) times the depth multiplier: depth(d) = max(int(d * depth_multiplier), min_depth).
// Average pools leave padded cells out of the mean (TF SAME avg pool; pool2d count_include_pad = false).
// Max pools never pick a padded cell.
//
// Parameter names (dots; the TF variable path with '/' -> '.' and the stage scope dropped):
//   Conv2d_1a_7x7.depthwise_weights      (3m, 1, 7, 7)   TF (7, 7, 3, m):   ours[c*m + j, 0, h, w] = tf[h, w, c, j]
//   Conv2d_1a_7x7.pointwise_weights      (d64, 3m, 1, 1) TF (1, 1, 3m, d64): ours[o, i, 0, 0] = tf[0, 0, i, o]
//   <scope>.weights                      (O, I, k, k)    TF HWIO (k, k, I, O): ours[o, i, h, w] = tf[h, w, i, o]
//   <scope>.BatchNorm.{gamma,beta,moving_mean,moving_variance}   (O)   same layout in TF
//   with <scope> = Conv2d_2b_1x1, Conv2d_2c_3x3, Conv2d_1a_7x7 (BatchNorm only), or
//   Mixed_<b>.Branch_<k>.Conv2d_<x> (e.g. Mixed_3b.Branch_1.Conv2d_0a_1x1.weights).
// The depthwise output channel order c*m + j is TF's and is what conv2d with groups = 3 computes.
// inception_tf_slim_name() gives the full TF variable name:
//   Conv2d_*, Mixed_3*, Mixed_4*  ->  FirstStageFeatureExtractor/InceptionV2/<path with '/'>
//   Mixed_5*                      ->  SecondStageFeatureExtractor/InceptionV2/<path with '/'>
//   e.g. Mixed_4e.Branch_2.Conv2d_0c_3x3.BatchNorm.moving_variance
//        -> FirstStageFeatureExtractor/InceptionV2/Mixed_4e/Branch_2/Conv2d_0c_3x3/BatchNorm/moving_variance
//
// Frozen parameters (see frozen_param in resnet.h): moving mean/variance always; gamma/beta unless
// bn_affine_trainable. Graph node names follow the parameter scopes: "<scope>" for a conv,
// "<scope>.BatchNorm", "<scope>.Relu", "Mixed_3b.Branch_3.AvgPool_0a_3x3", "Mixed_3b" for a concat; the
// end points of InceptionV2Taps carry slim's end point names.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "nn/graph.h"

namespace ctdet {

struct InceptionV2Options {
  double depth_multiplier = 1.0;    // > 0
  int min_depth = 16;               // >= 1
  double bn_eps = 1e-3;
  bool bn_affine_trainable = false;  // gamma / beta receive gradients (moving statistics never do)

  // A small network for CPU tests (depth_multiplier 1/16, min_depth 2: stem multiplier 1, Mixed_4e 36 channels,
  // Mixed_5c 64 channels).
  static InceptionV2Options tiny();

  int depth(int d) const;            // max(int(d * depth_multiplier), min_depth)
  int stem_multiplier() const;       // min(int(depth(64) / 3), 8), at least 1
};

// slim's end points, in build order. The first stage ends at Mixed_4e, the second at Mixed_5c.
const std::vector<std::string>& inception_v2_first_stage_end_points();   // Conv2d_1a_7x7 ... Mixed_4e
const std::vector<std::string>& inception_v2_second_stage_end_points();  // Mixed_5a, Mixed_5b, Mixed_5c

struct InceptionV2Taps {
  std::vector<std::pair<std::string, ValueId>> end_points;  // (slim end point name, value), in build order
  ValueId find(const std::string& name) const;              // kNoValue when absent
};

class InceptionV2Backbone {
 public:
  explicit InceptionV2Backbone(InceptionV2Options opt);
  const InceptionV2Options& options() const { return opt_; }

  // image (N,3,H,W) -> Mixed_4e (N, first_stage_channels(), ceil(H/16), ceil(W/16)).
  ValueId first_stage(Graph& g, ValueId image, InceptionV2Taps* taps = nullptr) const;
  // crops (R, first_stage_channels(), h, w) -> Mixed_5c (R, second_stage_channels(), ceil(h/2), ceil(w/2)).
  ValueId second_stage(Graph& g, ValueId crops, InceptionV2Taps* taps = nullptr) const;

  int first_stage_channels() const;   // depth(96) + depth(192) + depth(192) + depth(96)  (576 at 1.0)
  int second_stage_channels() const;  // depth(352) + depth(320) + depth(224) + depth(128) (1024 at 1.0)

 private:
  ValueId conv_bn_relu(Graph& g, ValueId x, const std::string& scope, int out_ch, int k, int stride) const;
  ValueId bn_relu(Graph& g, ValueId y, const std::string& scope) const;
  // A stride-1 module (Mixed_3b/3c/4b..4e/5b/5c): branch depths b0, b1a->b1b, b2a->b2b->b2b, pool -> b3.
  ValueId module(Graph& g, ValueId x, const std::string& name, int b0, int b1a, int b1b, int b2a, int b2b, int b3,
                 bool max_pool_branch3) const;
  // A stride-2 module (Mixed_4a/5a): b0a -> b0b/2, b1a -> b1b -> b1b/2, max pool /2 pass-through.
  ValueId reduction(Graph& g, ValueId x, const std::string& name, int b0a, int b0b, int b1a, int b1b) const;
  InceptionV2Options opt_;
};

// Parameter name (above) -> full TF-slim variable name. Throws ctdet::Error naming the parameter when it is
// not an Inception-v2 trunk parameter name.
std::string inception_tf_slim_name(const std::string& name);

}  // namespace ctdet
