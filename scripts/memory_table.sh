#!/usr/bin/env bash
# Prints the Markdown rows of docs/memory.md: `ctdet plan` for each model, size, batch and mode, planned for CUDA.
# Usage: scripts/memory_table.sh [path/to/ctdet]
set -euo pipefail
CTDET=${1:-build/ctdet}
echo "| model | input | batch | mode | params | grads | momentum | arena (planned) | lower bound | no-reuse sum | total | within 8 GiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for m in resnet101_backbone resnet101_c4 inception_v2_backbone; do
  for size in 600x600 600x1024; do
    for b in 1 2; do
      for mode in inference train; do
        flag=""; [ $mode = train ] && flag=--train
        r=$("$CTDET" plan --model $m --size $size --batch $b $flag --memory-budget 8GiB 2>&1) || { echo "| $m | $size | $b | $mode | plan failed |"; continue; }
        field() { echo "$r" | grep -F -m1 "  $1  " | awk -F'  +' '{print $3}'; }
        echo "| $m | $size | $b | $mode | $(field parameters) | $(field 'parameter gradients') | $(field 'optimizer state (momentum)') | $(field 'activations + workspace (arena)') | $(field 'lower bound (live at a node)') | $(field 'no-reuse sum') | $(field total) | yes |"
      done
    done
  done
done
