// `ctdet plan`: builds a model's graph for an input size and batch, plans its memory (forward, or forward
// and backward with --train) and prints the report. Works with or without a GPU: planning runs nothing.
#include <cstdio>

#include "apps/args.h"
#include "apps/command.h"
#include "detector/faster_rcnn.h"
#include "detector/model_zoo.h"
#include "nn/autograd.h"
#include "nn/planner.h"

namespace ctdet::app {

static int cmd_plan(const std::vector<std::string>& argv) {
  for (auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: ctdet plan --list-models | --model NAME [--size HxW] [--batch N] [--train [--store-grads]\n"
          "                  [--recompute-backbone]] [--memory-budget 8GiB] [--workspace-cap 256MiB] [--no-workspace-trim]\n"
          "                  [--device cpu|cuda] [--top 10]\n"
          "Prints the memory plan: parameters, gradients, optimizer state, planned activations and workspace,\n"
          "the no-reuse sum and lower bound, and the largest values live at the peak.\n"
          "--train plans the step `ctdet train` runs with one micro-batch: the parameter gradients in the arena,\n"
          "each live from its first write in backward to the update. --store-grads plans them as one block\n"
          "for the whole step instead (train.grad_accumulation > 1, where they add up across micro-batches).\n"
          "--recompute-backbone plans train.recompute_backbone: the backbone's first stage recomputed in backward\n"
          "segment by segment (gradient checkpointing; detectors only), keeping only the segments' outputs.\n"
          "--no-workspace-trim keeps every node's full workspace in CUDA plans (by default the busiest nodes'\n"
          "workspaces are cut to an eighth, one after another, and the smallest arena found is kept).\n");
      return 0;
    }
  Args a("plan", argv, {"model", "size", "batch", "memory-budget", "workspace-cap", "device", "top"},
         {"train", "list-models", "store-grads", "recompute-backbone", "no-workspace-trim"});
  if (a.flag("list-models")) {
    for (auto& m : known_models()) std::printf("%s\n", m.c_str());
    return 0;
  }
  ModelSpec s;
  s.name = a.get("model", "");
  CTDET_CHECK(!s.name.empty(), "plan: --model is required");
  std::string size = a.get("size", "600x600");
  auto x = size.find('x');
  CTDET_CHECK(x != std::string::npos, "plan: --size must be HxW, got '", size, "'");
  try {
    s.height = std::stoi(size.substr(0, x));
    s.width = std::stoi(size.substr(x + 1));
  } catch (...) {
    CTDET_FAIL("plan: --size must be HxW, got '", size, "'");
  }
  s.batch = a.get_int("batch", 1);
  s.train = a.flag("train");
  PlanOptions opt;
  std::string dev = a.get("device", "cuda");
  CTDET_CHECK(dev == "cpu" || dev == "cuda", "plan: --device must be cpu or cuda");
  opt.device = dev == "cpu" ? Device::CPU : Device::CUDA;
  if (a.has("workspace-cap")) opt.workspace_cap = parse_bytes(a.get("workspace-cap"));
  opt.trim_peak_workspace = !a.flag("no-workspace-trim");
  ModelGraph m = build_model_graph(s);
  CTDET_CHECK(s.train || !a.flag("store-grads"), "plan: --store-grads needs --train");
  if (s.train && !a.flag("store-grads")) param_gradients_to_arena(m.graph);
  std::string recompute_note;
  if (a.flag("recompute-backbone")) {
    CTDET_CHECK(s.train, "plan: --recompute-backbone needs --train");
    CTDET_CHECK(!m.recompute_segments.empty(), "plan: --recompute-backbone: model '", s.name,
                "' is not a detector (no backbone segments)");
    const int copied = apply_segment_recompute(m.graph, m.recompute_segments);
    recompute_note = str("backbone recomputed in backward: ", m.recompute_segments.size(), " segments (",
                         describe_segments(m.graph, m.recompute_segments), "), ", copied, " forward nodes copied\n");
  }
  std::printf("model %s (%s), input %dx%d, batch %d, %s, planned for %s\n", s.name.c_str(), m.description.c_str(),
              s.height, s.width, s.batch, s.train ? "training step" : "inference", dev.c_str());
  std::printf("graph: %d nodes, %d values\n", m.graph.num_nodes(), m.graph.num_values());
  std::printf("%s", recompute_note.c_str());
  MemoryPlan p;
  if (a.has("memory-budget")) {
    if (s.train && !a.flag("recompute-backbone")) opt.recompute_segments = m.recompute_segments;
    std::string log;
    p = plan_with_budget(m.graph, opt, parse_bytes(a.get("memory-budget")), &log);
    std::printf("%s", log.c_str());
  } else {
    p = plan_memory(m.graph, opt);
  }
  std::printf("%s", p.report(m.graph, a.get_int("top", 10)).c_str());
  return 0;
}

CTDET_COMMAND("plan", "print a model's memory plan for an input size and batch", cmd_plan);

}  // namespace ctdet::app
