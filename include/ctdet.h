/* ctdet.h — the C API of the ctdet lesion detector (Faster R-CNN on chest CT slices).
 *
 * Plain C (C89 types, no C++ in sight); link libctdet_capi.so, or libctdet_capi.a plus its system libraries
 * (docs/deployment.md lists them). Every function returns instead of aborting: errors come back as a
 * ctdet_status and a message from ctdet_last_error().
 *
 *   ctdet_status st;
 *   ctdet_model* m = ctdet_open("config.json", "model.safetensors", "auto", &st);
 *   if (!m) { fprintf(stderr, "%s\n", ctdet_last_error(NULL)); return 1; }
 *   ctdet_result* r = NULL;
 *   if (ctdet_detect_file(m, "slice.png", 0.3f, &r) == CTDET_OK) {
 *     for (int i = 0; i < ctdet_result_count(r); ++i) {
 *       ctdet_detection d;
 *       ctdet_result_get(r, i, &d);   // d.x1 .. d.y2 in the image's pixels, d.class_name, d.score
 *     }
 *     ctdet_result_free(r);
 *   }
 *   ctdet_close(m);
 *
 * Boxes: (x1, y1) top-left and (x2, y2) bottom-right edges in pixels of the image given (x2/y2 exclusive
 * edges, so a box over the whole image is 0, 0, width, height), inside [0, width] x [0, height].
 * Threads: one model may be used from several threads; its calls are serialised by a lock inside. Error messages
 * are kept per thread (ctdet_last_error(NULL)) and per model (ctdet_last_error(model), the model's last failure).
 */
#ifndef CTDET_H_
#define CTDET_H_

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define CTDET_API __declspec(dllexport)
#else
#define CTDET_API __attribute__((visibility("default")))
#endif

typedef enum ctdet_status {
  CTDET_OK = 0,
  CTDET_INVALID_ARGUMENT = 1, /* null pointer, bad size/stride/format/threshold/device name */
  CTDET_IO_ERROR = 2,         /* a file is missing or cannot be read */
  CTDET_BAD_IMAGE = 3,        /* not a PNG/JPEG/DICOM, corrupt, or too small for the detector */
  CTDET_MODEL_ERROR = 4,      /* config or weights unusable (wrong shapes, bad JSON, ...) */
  CTDET_DEVICE_ERROR = 5,     /* "cuda" asked for but no usable CUDA device */
  CTDET_OUT_OF_MEMORY = 6,
  CTDET_INTERNAL = 7          /* anything else; the message says what */
} ctdet_status;

typedef enum ctdet_pixel_format {
  CTDET_GRAY8 = 0,  /* 1 byte per pixel */
  CTDET_GRAY16 = 1, /* 2 bytes per pixel, native endianness, 0..65535 mapped linearly to 0..255: window raw CT first */
  CTDET_RGB8 = 2    /* 3 bytes per pixel, R G B */
} ctdet_pixel_format;

typedef struct ctdet_model ctdet_model;   /* opaque */
typedef struct ctdet_result ctdet_result; /* opaque: detections of one image */

typedef struct ctdet_detection {
  float x1, y1, x2, y2;   /* original-image pixels */
  int class_id;           /* 1-based (0 is the background, never reported) */
  const char* class_name; /* e.g. "GGO"; owned by the result, valid until ctdet_result_free */
  float score;            /* (0, 1] */
} ctdet_detection;

/* "0.1.0": the library version. */
CTDET_API const char* ctdet_version(void);
/* A constant English name of a status ("CTDET_BAD_IMAGE"). */
CTDET_API const char* ctdet_status_name(ctdet_status st);

/* Opens a model from a config file (JSON or TF pipeline.config) and weights (safetensors file or checkpoint).
 * device: "cpu", "cuda" or "auto" (NULL = "auto"). Returns NULL on failure with *st set (st may be NULL) and the
 * message in ctdet_last_error(NULL). */
CTDET_API ctdet_model* ctdet_open(const char* config_path, const char* weights_path, const char* device,
                                  ctdet_status* st);
/* Frees the model (NULL is fine). Results from it stay valid. */
CTDET_API void ctdet_close(ctdet_model* model);

/* Detects on raw pixels: height rows of stride_bytes bytes each (stride_bytes >= width * bytes per pixel), top
 * row first. Detections with score >= score_threshold (in [0, 1]) go to *out (free with ctdet_result_free); on
 * failure *out is NULL. */
CTDET_API ctdet_status ctdet_detect_buffer(ctdet_model* model, const void* pixels, int width, int height,
                                           int stride_bytes, ctdet_pixel_format fmt, float score_threshold,
                                           ctdet_result** out);
/* Detects on a PNG, JPEG or DICOM file (recognised by content, DICOM shown in the lung window). */
CTDET_API ctdet_status ctdet_detect_file(ctdet_model* model, const char* path, float score_threshold,
                                         ctdet_result** out);

/* Number of detections (0 for NULL), best score first. */
CTDET_API int ctdet_result_count(const ctdet_result* result);
/* The size of the image the result is about. */
CTDET_API ctdet_status ctdet_result_image_size(const ctdet_result* result, int* width, int* height);
/* Detection i (0 <= i < count) into *d. */
CTDET_API ctdet_status ctdet_result_get(const ctdet_result* result, int i, ctdet_detection* d);
CTDET_API void ctdet_result_free(ctdet_result* result);

/* The message of the last failed call: of this model when model is not NULL, else of this thread. "" when there
 * was none. The pointer is valid until the next failing call on the same model / thread. */
CTDET_API const char* ctdet_last_error(const ctdet_model* model);

#ifdef __cplusplus
}
#endif

#endif /* CTDET_H_ */
