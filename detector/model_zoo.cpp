#include "detector/model_zoo.h"

#include "nn/autograd.h"
#include "nn/core_ops.h"

namespace ctdet {

namespace {

// A fully connected network over the flattened image rows: a small real model for exercising the planner
// before the detector graphs exist, and for comparing planner behaviour on a simple chain.
ModelGraph build_mlp(const ModelSpec& s) {
  ModelGraph m;
  Graph& g = m.graph;
  int64_t rows = int64_t(s.batch) * s.height;
  m.input = g.input("image_rows", {rows, s.width});
  ValueId h = m.input;
  int64_t width = s.width;
  for (int i = 0; i < 4; ++i) {
    int64_t out = 1024;
    ValueId W = g.param(str("fc", i, ".weight"), {out, width}), b = g.param(str("fc", i, ".bias"), {out});
    h = g.add1("relu", str("relu", i), {g.add1("linear", str("fc", i), {h, W, b})});
    width = out;
  }
  m.output = g.add1("sum", "loss", {h});
  if (s.train) backward(g, m.output);
  else g.mark_output(m.output);
  m.description = str("MLP 4x1024 over ", rows, " rows of ", s.width, " pixels");
  return m;
}

}  // namespace

std::vector<std::string> known_models() { return {"mlp"}; }

ModelGraph build_model_graph(const ModelSpec& spec) {
  CTDET_CHECK(spec.height > 0 && spec.width > 0 && spec.batch > 0, "model '", spec.name, "': size ", spec.height, "x",
              spec.width, " batch ", spec.batch, " must be positive");
  if (spec.name == "mlp") return build_mlp(spec);
  std::string list;
  for (auto& k : known_models()) list += (list.empty() ? "" : ", ") + k;
  CTDET_FAIL("unknown model '", spec.name, "' (known: ", list, ")");
}

}  // namespace ctdet
