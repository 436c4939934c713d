// Inception-v2 (TF-slim layout) graph builders. See inception_v2.h for the layers and the naming.
#include "detector/backbone/inception_v2.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "detector/backbone/resnet.h"  // frozen_param
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/pool.h"

namespace ctdet {

InceptionV2Options InceptionV2Options::tiny() {
  InceptionV2Options o;
  o.depth_multiplier = 0.0625;
  o.min_depth = 2;
  return o;
}

int InceptionV2Options::depth(int d) const {
  // Python int() truncates toward zero; d * depth_multiplier is positive here.
  return std::max(int(double(d) * depth_multiplier), min_depth);
}

int InceptionV2Options::stem_multiplier() const { return std::max(std::min(depth(64) / 3, 8), 1); }

const std::vector<std::string>& inception_v2_first_stage_end_points() {
  static const std::vector<std::string> names = {"Conv2d_1a_7x7", "MaxPool_2a_3x3", "Conv2d_2b_1x1", "Conv2d_2c_3x3",
                                                 "MaxPool_3a_3x3", "Mixed_3b",     "Mixed_3c",      "Mixed_4a",
                                                 "Mixed_4b",       "Mixed_4c",     "Mixed_4d",      "Mixed_4e"};
  return names;
}

const std::vector<std::string>& inception_v2_second_stage_end_points() {
  static const std::vector<std::string> names = {"Mixed_5a", "Mixed_5b", "Mixed_5c"};
  return names;
}

ValueId InceptionV2Taps::find(const std::string& name) const {
  for (const auto& [n, v] : end_points)
    if (n == name) return v;
  return kNoValue;
}

InceptionV2Backbone::InceptionV2Backbone(InceptionV2Options opt) : opt_(opt) {
  CTDET_CHECK(opt_.depth_multiplier > 0 && std::isfinite(opt_.depth_multiplier),
              "inception_v2: depth_multiplier must be positive, got ", opt_.depth_multiplier);
  CTDET_CHECK(opt_.min_depth >= 1, "inception_v2: min_depth must be at least 1, got ", opt_.min_depth);
  CTDET_CHECK(opt_.bn_eps > 0, "inception_v2: bn_eps must be positive, got ", opt_.bn_eps);
}

int InceptionV2Backbone::first_stage_channels() const {
  return opt_.depth(96) + opt_.depth(192) + opt_.depth(192) + opt_.depth(96);
}

int InceptionV2Backbone::second_stage_channels() const {
  return opt_.depth(352) + opt_.depth(320) + opt_.depth(224) + opt_.depth(128);
}

namespace {

Conv2dParams same_conv(int H, int W, int k, int stride, int groups = 1) {
  Conv2dParams cp;
  cp.stride_h = cp.stride_w = stride;
  const SamePadding ph = tf_same_padding(H, k, stride), pw = tf_same_padding(W, k, stride);
  cp.pad_top = ph.before;
  cp.pad_bottom = ph.after;
  cp.pad_left = pw.before;
  cp.pad_right = pw.after;
  cp.groups = groups;
  return cp;
}

Pool2dParams same_pool(PoolKind kind, int stride) {
  Pool2dParams pp;
  pp.kind = kind;
  pp.kh = pp.kw = 3;
  pp.sh = pp.sw = stride;
  pp.padding = PoolPadding::TfSame;
  pp.count_include_pad = false;  // TF SAME average pooling divides by the in-image cells only
  return pp;
}

ValueId max_pool(Graph& g, ValueId x, const std::string& name, int stride) {
  return g.add1("max_pool", name, {x}, same_pool(PoolKind::Max, stride));
}

ValueId avg_pool(Graph& g, ValueId x, const std::string& name) {
  return g.add1("pool2d", name, {x}, same_pool(PoolKind::Avg, 1));
}

}  // namespace

ValueId InceptionV2Backbone::bn_relu(Graph& g, ValueId y, const std::string& scope) const {
  const std::string b = scope + ".BatchNorm";
  const Shape c{g.value(y).shape[1]};
  ValueId gamma = opt_.bn_affine_trainable ? g.param(b + ".gamma", c) : frozen_param(g, b + ".gamma", c);
  ValueId beta = opt_.bn_affine_trainable ? g.param(b + ".beta", c) : frozen_param(g, b + ".beta", c);
  ValueId mean = frozen_param(g, b + ".moving_mean", c);
  ValueId var = frozen_param(g, b + ".moving_variance", c);
  BatchNormParams bp;
  bp.eps = opt_.bn_eps;
  if (!opt_.bn_affine_trainable) {
    // Frozen BN + ReLU as one fused pass (as in resnet.cpp): statistics folded into a per-channel scale and shift.
    auto ss = g.add("bn_scale_shift", b, {gamma, beta, mean, var}, bp);
    return g.add1("bn_add_relu", scope + ".Relu", {y, ss[0], ss[1]});
  }
  ValueId z = g.add1("batchnorm_frozen", b, {y, gamma, beta, mean, var}, bp);
  return g.add1("relu", scope + ".Relu", {z});
}

ValueId InceptionV2Backbone::conv_bn_relu(Graph& g, ValueId x, const std::string& scope, int out_ch, int k,
                                          int stride) const {
  const Shape& s = g.value(x).shape;
  ValueId w = g.param(scope + ".weights", {out_ch, s[1], k, k});
  ValueId y = g.add1("conv2d", scope, {x, w}, same_conv(int(s[2]), int(s[3]), k, stride));
  return bn_relu(g, y, scope);
}

ValueId InceptionV2Backbone::module(Graph& g, ValueId x, const std::string& name, int b0, int b1a, int b1b, int b2a,
                                    int b2b, int b3, bool max_pool_branch3) const {
  const std::string p = name + ".";
  const auto& o = opt_;
  ValueId br0 = conv_bn_relu(g, x, p + "Branch_0.Conv2d_0a_1x1", o.depth(b0), 1, 1);
  ValueId br1 = conv_bn_relu(g, x, p + "Branch_1.Conv2d_0a_1x1", o.depth(b1a), 1, 1);
  br1 = conv_bn_relu(g, br1, p + "Branch_1.Conv2d_0b_3x3", o.depth(b1b), 3, 1);
  ValueId br2 = conv_bn_relu(g, x, p + "Branch_2.Conv2d_0a_1x1", o.depth(b2a), 1, 1);
  br2 = conv_bn_relu(g, br2, p + "Branch_2.Conv2d_0b_3x3", o.depth(b2b), 3, 1);
  br2 = conv_bn_relu(g, br2, p + "Branch_2.Conv2d_0c_3x3", o.depth(b2b), 3, 1);
  ValueId br3 = max_pool_branch3 ? max_pool(g, x, p + "Branch_3.MaxPool_0a_3x3", 1)
                                 : avg_pool(g, x, p + "Branch_3.AvgPool_0a_3x3");
  br3 = conv_bn_relu(g, br3, p + "Branch_3.Conv2d_0b_1x1", o.depth(b3), 1, 1);
  return g.add1("concat", name, {br0, br1, br2, br3});
}

ValueId InceptionV2Backbone::reduction(Graph& g, ValueId x, const std::string& name, int b0a, int b0b, int b1a,
                                       int b1b) const {
  const std::string p = name + ".";
  const auto& o = opt_;
  ValueId br0 = conv_bn_relu(g, x, p + "Branch_0.Conv2d_0a_1x1", o.depth(b0a), 1, 1);
  br0 = conv_bn_relu(g, br0, p + "Branch_0.Conv2d_1a_3x3", o.depth(b0b), 3, 2);
  ValueId br1 = conv_bn_relu(g, x, p + "Branch_1.Conv2d_0a_1x1", o.depth(b1a), 1, 1);
  br1 = conv_bn_relu(g, br1, p + "Branch_1.Conv2d_0b_3x3", o.depth(b1b), 3, 1);
  br1 = conv_bn_relu(g, br1, p + "Branch_1.Conv2d_1a_3x3", o.depth(b1b), 3, 2);
  ValueId br2 = max_pool(g, x, p + "Branch_2.MaxPool_1a_3x3", 2);
  return g.add1("concat", name, {br0, br1, br2});
}

ValueId InceptionV2Backbone::first_stage(Graph& g, ValueId image, InceptionV2Taps* taps) const {
  const Shape& in = g.value(image).shape;
  CTDET_CHECK(in.rank() == 4 && in[1] == 3, "inception_v2 first stage: the image must be (N,3,H,W), got ",
              g.describe(image));
  auto tap = [&](const char* name, ValueId v) {
    if (taps) taps->end_points.emplace_back(name, v);
    return v;
  };
  // Conv2d_1a_7x7: separable. Depthwise 7x7/2 (groups = 3, 3m outputs, channel c*m + j), pointwise 1x1,
  // then BN and ReLU (none between the two convs).
  const int m = opt_.stem_multiplier();
  ValueId dw = g.param("Conv2d_1a_7x7.depthwise_weights", {3 * m, 1, 7, 7});
  ValueId x = g.add1("conv2d", "Conv2d_1a_7x7.depthwise", {image, dw}, same_conv(int(in[2]), int(in[3]), 7, 2, 3));
  ValueId pw = g.param("Conv2d_1a_7x7.pointwise_weights", {opt_.depth(64), 3 * m, 1, 1});
  x = g.add1("conv2d", "Conv2d_1a_7x7.pointwise", {x, pw}, same_conv(1, 1, 1, 1));
  x = tap("Conv2d_1a_7x7", bn_relu(g, x, "Conv2d_1a_7x7"));
  x = tap("MaxPool_2a_3x3", max_pool(g, x, "MaxPool_2a_3x3", 2));
  x = tap("Conv2d_2b_1x1", conv_bn_relu(g, x, "Conv2d_2b_1x1", opt_.depth(64), 1, 1));
  x = tap("Conv2d_2c_3x3", conv_bn_relu(g, x, "Conv2d_2c_3x3", opt_.depth(192), 3, 1));
  x = tap("MaxPool_3a_3x3", max_pool(g, x, "MaxPool_3a_3x3", 2));
  //                                        b0   b1a  b1b  b2a  b2b  b3
  x = tap("Mixed_3b", module(g, x, "Mixed_3b", 64, 64, 64, 64, 96, 32, false));
  x = tap("Mixed_3c", module(g, x, "Mixed_3c", 64, 64, 96, 64, 96, 64, false));
  x = tap("Mixed_4a", reduction(g, x, "Mixed_4a", 128, 160, 64, 96));
  x = tap("Mixed_4b", module(g, x, "Mixed_4b", 224, 64, 96, 96, 128, 128, false));
  x = tap("Mixed_4c", module(g, x, "Mixed_4c", 192, 96, 128, 96, 128, 128, false));
  x = tap("Mixed_4d", module(g, x, "Mixed_4d", 160, 128, 160, 128, 160, 96, false));
  x = tap("Mixed_4e", module(g, x, "Mixed_4e", 96, 128, 192, 160, 192, 96, false));
  return x;
}

ValueId InceptionV2Backbone::second_stage(Graph& g, ValueId crops, InceptionV2Taps* taps) const {
  const Shape& in = g.value(crops).shape;
  CTDET_CHECK(in.rank() == 4 && in[1] == first_stage_channels(), "inception_v2 second stage: crops must be (R,",
              first_stage_channels(), ",h,w), got ", g.describe(crops));
  auto tap = [&](const char* name, ValueId v) {
    if (taps) taps->end_points.emplace_back(name, v);
    return v;
  };
  ValueId x = tap("Mixed_5a", reduction(g, crops, "Mixed_5a", 128, 192, 192, 256));
  x = tap("Mixed_5b", module(g, x, "Mixed_5b", 352, 192, 320, 160, 224, 128, false));
  x = tap("Mixed_5c", module(g, x, "Mixed_5c", 352, 192, 320, 192, 224, 128, true));
  return x;
}

std::string inception_tf_slim_name(const std::string& name) {
  std::vector<std::string> part;
  {
    std::stringstream ss(name);
    std::string s;
    while (std::getline(ss, s, '.')) part.push_back(s);
  }
  auto bad = [&]() -> std::string {
    CTDET_FAIL("inception_tf_slim_name: '", name, "' is not an Inception-v2 trunk parameter name");
  };
  auto is_bn_var = [](const std::string& s) {
    return s == "gamma" || s == "beta" || s == "moving_mean" || s == "moving_variance";
  };
  // The tail after the conv scope: "weights" or "BatchNorm.<var>" (the stem: depthwise/pointwise weights).
  auto tail_ok = [&](size_t at, bool stem) {
    const size_t n = part.size() - at;
    if (n == 1) return stem ? (part[at] == "depthwise_weights" || part[at] == "pointwise_weights") : part[at] == "weights";
    return n == 2 && part[at] == "BatchNorm" && is_bn_var(part[at + 1]);
  };
  auto is_conv_scope = [](const std::string& s) {
    return s.size() > 7 && s.compare(0, 7, "Conv2d_") == 0 && s.find_first_of("/ ") == std::string::npos;
  };
  if (part.size() < 2) return bad();
  bool second = false;
  if (part[0] == "Conv2d_1a_7x7") {
    if (!tail_ok(1, true)) return bad();
  } else if (part[0] == "Conv2d_2b_1x1" || part[0] == "Conv2d_2c_3x3") {
    if (!tail_ok(1, false)) return bad();
  } else {
    const auto& s1 = inception_v2_first_stage_end_points();
    const auto& s2 = inception_v2_second_stage_end_points();
    const bool in1 = part[0].compare(0, 6, "Mixed_") == 0 && std::find(s1.begin(), s1.end(), part[0]) != s1.end();
    second = std::find(s2.begin(), s2.end(), part[0]) != s2.end();
    if (!in1 && !second) return bad();
    if (part.size() < 4 || part[1].size() != 8 || part[1].compare(0, 7, "Branch_") != 0 || part[1][7] < '0' ||
        part[1][7] > '3' || !is_conv_scope(part[2]) || !tail_ok(3, false))
      return bad();
  }
  std::string out = second ? "SecondStageFeatureExtractor/InceptionV2" : "FirstStageFeatureExtractor/InceptionV2";
  for (const auto& p : part) out += "/" + p;
  return out;
}

}  // namespace ctdet
