// Line charts as inline SVG text (for the HTML report): PR curves, FROC curves, training losses.
//
// Coordinates: the SVG is width x height user units (= CSS pixels). The plot area is the rectangle
// [left, width - right] x [top, height - bottom]; a data point (x, y) maps to
//   px = left + (X(x) - X(x_min)) / (X(x_max) - X(x_min)) * (width - left - right)
//   py = top + (height - top - bottom) - (Y(y) - Y(y_min)) / (Y(y_max) - Y(y_min)) * (height - top - bottom)
// with X = log2 when log_x (else identity), Y likewise. Values outside the range are clamped to its edge
// (a FROC point at 0 FP/image sits on the left edge of a log axis). Points with a NaN coordinate are skipped
// (they split a line into pieces). Coordinates are written with 2 decimals.
//
// Every string (title, labels, series names, colours) is XML-escaped, so input-controlled names are safe.
#pragma once
#include <limits>
#include <string>
#include <vector>

namespace ctdet {

constexpr double kAuto = std::numeric_limits<double>::quiet_NaN();  // "take it from the data"

struct PlotSeries {
  std::string name;          // legend text; empty: not in the legend
  std::vector<double> x, y;  // same length
  std::string color = "#1f77b4";
  bool line = true;          // polyline through the points
  bool markers = false;      // a circle at every point
  bool dashed = false;
  double stroke_width = 1.8;
  double marker_radius = 3.5;
};

enum class LegendCorner { kTopRight, kTopLeft, kBottomRight, kBottomLeft, kNone };

struct PlotOptions {
  int width = 520, height = 340;
  int left = 58, right = 16, top = 30, bottom = 46;  // margins around the plot area
  std::string title, x_label, y_label;
  // Axis range; NaN = from the data (min/max of the finite values, widened to "nice" tick values).
  double x_min = kAuto, x_max = kAuto, y_min = kAuto, y_max = kAuto;
  bool log_x = false, log_y = false;  // base-2 logarithmic axes (ranges must then be > 0)
  // Explicit ticks (empty: automatic "nice" 1-2-5 ticks, or powers of two on a log axis). Labels parallel
  // to the ticks; empty labels: the values printed with %g (1/8 style fractions on a log axis).
  std::vector<double> x_ticks, y_ticks;
  std::vector<std::string> x_tick_labels, y_tick_labels;
  LegendCorner legend = LegendCorner::kTopRight;
  std::string id;  // optional id attribute of the <svg>
};

// The data-to-pixel mapping of a chart, with its ranges resolved.
struct PlotFrame {
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  bool log_x = false, log_y = false;
  double left = 0, top = 0, plot_w = 1, plot_h = 1;
  double px(double x) const;  // clamped into the plot area
  double py(double y) const;
};

// Resolves automatic ranges from the series; throws ctdet::Error for an empty or inverted explicit range,
// or a log axis with a non-positive bound, naming the chart title.
PlotFrame plot_frame(const std::vector<PlotSeries>& series, const PlotOptions& opt);

// The complete <svg>...</svg> element (no XML prolog, no external references).
std::string svg_line_chart(const std::vector<PlotSeries>& series, const PlotOptions& opt);

// "1-2-5" tick values covering [lo, hi] with about `target` steps; also widens lo/hi to tick multiples.
std::vector<double> nice_ticks(double& lo, double& hi, int target = 5);

// &, <, >, " and ' replaced by entities; bytes < 0x20 other than tab/newline/CR become U+FFFD.
std::string xml_escape(const std::string& s);

}  // namespace ctdet
