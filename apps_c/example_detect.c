/* ctdet_example: the C API from plain C, nothing but include/ctdet.h.
 *
 *   ctdet_example CONFIG WEIGHTS IMAGE [THRESHOLD [DEVICE]]
 *
 * Prints one line per detection: class, score, box (x1 y1 x2 y2) in the image's pixels. Exit status 0 when
 * the image was processed, 1 on any error (the message from ctdet_last_error). */
#include <stdio.h>
#include <stdlib.h>

#include "ctdet.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s CONFIG WEIGHTS IMAGE [THRESHOLD [cpu|cuda|auto]]\n(ctdet %s)\n", argv[0],
            ctdet_version());
    return 2;
  }
  const float threshold = argc > 4 ? (float)atof(argv[4]) : 0.3f;
  const char* device = argc > 5 ? argv[5] : "auto";

  ctdet_status st = CTDET_OK;
  ctdet_model* model = ctdet_open(argv[1], argv[2], device, &st);
  if (!model) {
    fprintf(stderr, "error (%s): %s\n", ctdet_status_name(st), ctdet_last_error(NULL));
    return 1;
  }
  ctdet_result* result = NULL;
  st = ctdet_detect_file(model, argv[3], threshold, &result);
  if (st != CTDET_OK) {
    fprintf(stderr, "error (%s): %s\n", ctdet_status_name(st), ctdet_last_error(model));
    ctdet_close(model);
    return 1;
  }
  int width = 0, height = 0;
  ctdet_result_image_size(result, &width, &height);
  const int n = ctdet_result_count(result);
  printf("%s: %dx%d, %d detections at score >= %.2f (ctdet %s)\n", argv[3], width, height, n, threshold,
         ctdet_version());
  for (int i = 0; i < n; ++i) {
    ctdet_detection d;
    if (ctdet_result_get(result, i, &d) != CTDET_OK) break;
    printf("%-8s %.4f  %.1f %.1f %.1f %.1f\n", d.class_name, d.score, d.x1, d.y1, d.x2, d.y2);
  }
  ctdet_result_free(result);
  ctdet_close(model);
  return 0;
}
