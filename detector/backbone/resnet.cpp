// ResNet-101 v1 graph builders. See resnet.h for the two stride placements and the naming.
#include "detector/backbone/resnet.h"

#include <sstream>
#include <vector>

#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/pool.h"

namespace ctdet {

const char* resnet_layout_name(ResNetLayout l) { return l == ResNetLayout::TfSlim ? "tf_slim" : "torchvision"; }

ResNetOptions ResNetOptions::resnet101(ResNetLayout layout) {
  ResNetOptions o;
  o.layout = layout;
  return o;
}

ResNetOptions ResNetOptions::tiny(ResNetLayout layout) {
  ResNetOptions o;
  o.layout = layout;
  o.base_width = 4;
  o.units = {2, 1, 1, 1};
  return o;
}

ResNetBackbone::ResNetBackbone(ResNetOptions opt) : opt_(opt) {
  CTDET_CHECK(opt_.base_width > 0 && opt_.expansion > 0, "resnet: base_width and expansion must be positive, got ",
              opt_.base_width, " and ", opt_.expansion);
  for (int b = 0; b < 4; ++b)
    CTDET_CHECK(opt_.units[size_t(b)] > 0, "resnet: block", b + 1, " needs at least one unit, got ",
                opt_.units[size_t(b)]);
  CTDET_CHECK(opt_.block4_stride == 1 || opt_.block4_stride == 2, "resnet: block4_stride must be 1 or 2, got ",
              opt_.block4_stride);
  CTDET_CHECK(opt_.bn_eps > 0, "resnet: bn_eps must be positive, got ", opt_.bn_eps);
}

ValueId frozen_param(Graph& g, const std::string& name, const Shape& shape) {
  ValueId v = g.param(name, shape);
  g.value_mut(v).requires_grad = false;
  return v;
}

ValueId ResNetBackbone::conv_bn(Graph& g, ValueId x, const std::string& conv_name, const std::string& bn_name,
                                int out_ch, int k, int stride, int pad) const {
  const int64_t in_ch = g.value(x).shape[1];
  ValueId w = g.param(conv_name + ".weight", {out_ch, in_ch, k, k});
  Conv2dParams cp;
  cp.stride_h = cp.stride_w = stride;
  cp.pad_top = cp.pad_bottom = cp.pad_left = cp.pad_right = pad;
  ValueId y = g.add1("conv2d", conv_name, {x, w}, cp);
  const Shape c{out_ch};
  ValueId gamma = opt_.bn_affine_trainable ? g.param(bn_name + ".weight", c) : frozen_param(g, bn_name + ".weight", c);
  ValueId beta = opt_.bn_affine_trainable ? g.param(bn_name + ".bias", c) : frozen_param(g, bn_name + ".bias", c);
  ValueId mean = frozen_param(g, bn_name + ".running_mean", c);
  ValueId var = frozen_param(g, bn_name + ".running_var", c);
  BatchNormParams bp;
  bp.eps = opt_.bn_eps;
  return g.add1("batchnorm_frozen", bn_name, {y, gamma, beta, mean, var}, bp);
}

ValueId ResNetBackbone::unit(Graph& g, ValueId x, int block, int u, int stride) const {
  const std::string p = str("layer", block, ".", u, ".");
  const int64_t in_ch = g.value(x).shape[1];
  const int width = opt_.width(block), out = opt_.out_channels(block);

  ValueId shortcut = x;
  const bool project = opt_.layout == ResNetLayout::Torchvision ? (stride != 1 || in_ch != out) : in_ch != out;
  if (project) {
    shortcut = conv_bn(g, x, p + "downsample.0", p + "downsample.1", out, 1, stride, 0);
  } else if (stride > 1) {
    // TF-slim subsample(): a 1x1 max pool with the stride, i.e. every stride-th pixel (VALID).
    Pool2dParams pp;
    pp.kind = PoolKind::Max;
    pp.kh = pp.kw = 1;
    pp.sh = pp.sw = stride;
    shortcut = g.add1("max_pool", p + "subsample", {x}, pp);
  }
  ValueId h = conv_bn_relu(g, x, p + "conv1", p + "bn1", p + "relu1", width, 1, 1, 0);
  // 3x3 with padding 1/1 in both layouts: slim conv2d_same pads (k-1)/2 = 1 each side for stride 2, and SAME
  // at stride 1 is 1/1 too.
  h = conv_bn_relu(g, h, p + "conv2", p + "bn2", p + "relu2", width, 3, stride, 1);
  return conv_bn_relu(g, h, p + "conv3", p + "bn3", p + "relu", out, 1, 1, 0, shortcut);
}

// conv -> frozen BN [-> + residual] -> ReLU. With frozen gamma/beta (the default) the BN, the add and the ReLU are one
// fused pass (bn_scale_shift folds the statistics into a per-channel scale and shift, bn_add_relu applies them): one
// memory pass instead of three and no intermediate buffers. With trainable gamma/beta the separate ops are used.
ValueId ResNetBackbone::conv_bn_relu(Graph& g, ValueId x, const std::string& conv_name, const std::string& bn_name,
                                     const std::string& relu_name, int out_ch, int k, int stride, int pad,
                                     ValueId residual) const {
  if (opt_.bn_affine_trainable) {
    ValueId h = conv_bn(g, x, conv_name, bn_name, out_ch, k, stride, pad);
    if (residual != kNoValue) h = g.add1("add", relu_name + "_add", {h, residual});
    return g.add1("relu", relu_name, {h});
  }
  const int64_t in_ch = g.value(x).shape[1];
  ValueId w = g.param(conv_name + ".weight", {out_ch, in_ch, k, k});
  Conv2dParams cp;
  cp.stride_h = cp.stride_w = stride;
  cp.pad_top = cp.pad_bottom = cp.pad_left = cp.pad_right = pad;
  ValueId y = g.add1("conv2d", conv_name, {x, w}, cp);
  const Shape c{out_ch};
  BatchNormParams bp;
  bp.eps = opt_.bn_eps;
  auto ss = g.add("bn_scale_shift", bn_name, {frozen_param(g, bn_name + ".weight", c), frozen_param(g, bn_name + ".bias", c),
                                              frozen_param(g, bn_name + ".running_mean", c),
                                              frozen_param(g, bn_name + ".running_var", c)},
                  bp);
  std::vector<ValueId> in = {y, ss[0], ss[1]};
  if (residual != kNoValue) in.push_back(residual);
  return g.add1("bn_add_relu", relu_name, in);
}

ValueId ResNetBackbone::first_stage(Graph& g, ValueId image, ResNetTaps* taps) const {
  const Shape& in = g.value(image).shape;
  CTDET_CHECK(in.rank() == 4 && in[1] == 3, "resnet first stage: the image must be (N,3,H,W), got ",
              g.describe(image));
  ValueId x = conv_bn_relu(g, image, "conv1", "bn1", "relu", opt_.base_width, 7, 2, 3);
  Pool2dParams pp;
  pp.kind = PoolKind::Max;
  pp.kh = pp.kw = 3;
  pp.sh = pp.sw = 2;
  if (opt_.layout == ResNetLayout::TfSlim) {
    pp.padding = PoolPadding::TfSame;
  } else {
    pp.padding = PoolPadding::Explicit;
    pp.pad_h = pp.pad_w = 1;
  }
  x = g.add1("max_pool", "maxpool", {x}, pp);
  if (taps) taps->stem = x;
  // Block strides for output stride 16: slim puts them on the last unit of block1/block2 (block3's is
  // turned into stride 1); torchvision on the first unit of layer2/layer3.
  const int block_stride[3] = {opt_.layout == ResNetLayout::TfSlim ? 2 : 1, 2, opt_.layout == ResNetLayout::TfSlim ? 1 : 2};
  for (int b = 1; b <= 3; ++b) {
    const int n = opt_.units[size_t(b - 1)];
    for (int u = 0; u < n; ++u) {
      const bool strided_unit = opt_.layout == ResNetLayout::TfSlim ? u == n - 1 : u == 0;
      x = unit(g, x, b, u, strided_unit ? block_stride[b - 1] : 1);
    }
    if (taps) (b == 1 ? taps->block1 : b == 2 ? taps->block2 : taps->block3) = x;
  }
  return x;
}

ValueId ResNetBackbone::second_stage(Graph& g, ValueId crops) const {
  const Shape& in = g.value(crops).shape;
  CTDET_CHECK(in.rank() == 4 && in[1] == opt_.out_channels(3), "resnet second stage: crops must be (R,",
              opt_.out_channels(3), ",h,w), got ", g.describe(crops));
  ValueId x = crops;
  const int n = opt_.units[3];
  for (int u = 0; u < n; ++u) {
    const bool strided_unit = opt_.layout == ResNetLayout::TfSlim ? u == n - 1 : u == 0;
    x = unit(g, x, 4, u, strided_unit ? opt_.block4_stride : 1);
  }
  return x;
}

std::string resnet_tf_slim_name(const std::string& torch_name) {
  std::vector<std::string> part;
  {
    std::stringstream ss(torch_name);
    std::string s;
    while (std::getline(ss, s, '.')) part.push_back(s);
  }
  auto bad = [&]() -> std::string {
    CTDET_FAIL("resnet_tf_slim_name: '", torch_name, "' is not a ResNet trunk parameter name");
  };
  auto bn_var = [&](const std::string& x) -> std::string {
    if (x == "weight") return "gamma";
    if (x == "bias") return "beta";
    if (x == "running_mean") return "moving_mean";
    if (x == "running_var") return "moving_variance";
    return bad();
  };
  const std::string s1 = "FirstStageFeatureExtractor/resnet_v1_101/";
  if (part.size() == 2 && part[0] == "conv1" && part[1] == "weight") return s1 + "conv1/weights";
  if (part.size() == 2 && part[0] == "bn1") return s1 + "conv1/BatchNorm/" + bn_var(part[1]);
  if (part.size() < 4 || part[0].size() != 6 || part[0].compare(0, 5, "layer") != 0) return bad();
  const char b = part[0][5];
  if (b < '1' || b > '4') return bad();
  int u = -1;
  try {
    size_t used = 0;
    u = std::stoi(part[1], &used);
    if (used != part[1].size() || u < 0) return bad();
  } catch (const std::exception&) {
    return bad();
  }
  const std::string unit = str(b == '4' ? "SecondStageFeatureExtractor/resnet_v1_101/" : s1, "block", b, "/unit_",
                               u + 1, "/bottleneck_v1/");
  if (part.size() == 4 && part[2].size() == 5 && part[2].compare(0, 4, "conv") == 0 && part[2][4] >= '1' &&
      part[2][4] <= '3' && part[3] == "weight")
    return unit + part[2] + "/weights";
  if (part.size() == 4 && part[2].size() == 3 && part[2].compare(0, 2, "bn") == 0 && part[2][2] >= '1' &&
      part[2][2] <= '3')
    return unit + "conv" + part[2][2] + "/BatchNorm/" + bn_var(part[3]);
  if (part.size() == 5 && part[2] == "downsample" && part[3] == "0" && part[4] == "weight")
    return unit + "shortcut/weights";
  if (part.size() == 5 && part[2] == "downsample" && part[3] == "1") return unit + "shortcut/BatchNorm/" + bn_var(part[4]);
  return bad();
}

}  // namespace ctdet
