// SVG line charts (io/svg_plot.h).
#include "io/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "nn/error.h"

namespace ctdet {

namespace {

std::string fmt2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

std::string fmt_tick(double v, bool log_axis) {
  char b[32];
  if (std::abs(v) < 1e-12) return "0";
  if (log_axis && v < 1) {
    const double inv = 1.0 / v;
    if (std::abs(inv - std::round(inv)) < 1e-9) {
      std::snprintf(b, sizeof b, "1/%g", std::round(inv));
      return b;
    }
  }
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

double axis_value(double v, bool log_axis) { return log_axis ? std::log2(v) : v; }

// Range of one axis from the data: finite values (positive only on a log axis).
void data_range(const std::vector<PlotSeries>& series, bool x_axis, bool log_axis, double* lo, double* hi) {
  *lo = INFINITY;
  *hi = -INFINITY;
  for (const auto& s : series) {
    const auto& v = x_axis ? s.x : s.y;
    for (double d : v) {
      if (!std::isfinite(d) || (log_axis && d <= 0)) continue;
      *lo = std::min(*lo, d);
      *hi = std::max(*hi, d);
    }
  }
}

struct Axis {
  double lo, hi;
  std::vector<double> ticks;
  std::vector<std::string> labels;
};

Axis resolve_axis(const std::vector<PlotSeries>& series, bool x_axis, const PlotOptions& opt) {
  const bool log_axis = x_axis ? opt.log_x : opt.log_y;
  double lo = x_axis ? opt.x_min : opt.y_min, hi = x_axis ? opt.x_max : opt.y_max;
  const char* name = x_axis ? "x" : "y";
  const bool auto_lo = std::isnan(lo), auto_hi = std::isnan(hi);
  double dlo, dhi;
  data_range(series, x_axis, log_axis, &dlo, &dhi);
  if (!std::isfinite(dlo)) {  // no usable data
    dlo = log_axis ? 1 : 0;
    dhi = log_axis ? 2 : 1;
  }
  if (auto_lo) lo = auto_hi ? dlo : std::min(dlo, hi);
  if (auto_hi) hi = auto_lo ? dhi : std::max(dhi, lo);
  if (log_axis) {
    CTDET_CHECK(lo > 0 && hi > 0, "svg chart '", opt.title, "': log ", name, " axis needs a positive range, got [",
                lo, ", ", hi, "]");
    if (auto_lo) lo = std::exp2(std::floor(std::log2(lo)));
    if (auto_hi) hi = std::exp2(std::ceil(std::log2(hi)));
    if (hi <= lo) {
      if (auto_hi) hi = lo * 2;
      else if (auto_lo) lo = hi / 2;
    }
  } else if (hi <= lo && (auto_lo || auto_hi)) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    if (auto_hi) hi = lo + pad;
    else lo = hi - pad;
  }
  CTDET_CHECK(std::isfinite(lo) && std::isfinite(hi) && hi > lo, "svg chart '", opt.title, "': empty or inverted ",
              name, " range [", lo, ", ", hi, "]");

  Axis a{lo, hi, x_axis ? opt.x_ticks : opt.y_ticks, x_axis ? opt.x_tick_labels : opt.y_tick_labels};
  if (a.ticks.empty()) {
    if (log_axis) {
      for (double e = std::ceil(std::log2(lo) - 1e-9); e <= std::log2(hi) + 1e-9; e += 1) a.ticks.push_back(std::exp2(e));
    } else {
      double tl = lo, th = hi;
      a.ticks = nice_ticks(tl, th);
      if (auto_lo && auto_hi) {  // widen the range to the ticks
        a.lo = tl;
        a.hi = th;
      } else {
        std::vector<double> inside;
        for (double t : a.ticks)
          if (t >= lo - 1e-9 * (hi - lo) && t <= hi + 1e-9 * (hi - lo)) inside.push_back(t);
        a.ticks = inside;
      }
    }
  }
  if (a.labels.size() != a.ticks.size()) {
    a.labels.clear();
    for (double t : a.ticks) a.labels.push_back(fmt_tick(t, log_axis));
  }
  return a;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size() + 16);
  for (unsigned char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default:
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') o += "\xEF\xBF\xBD";
        else o += char(c);
    }
  }
  return o;
}

std::vector<double> nice_ticks(double& lo, double& hi, int target) {
  CTDET_CHECK(std::isfinite(lo) && std::isfinite(hi) && hi > lo && target > 0, "nice_ticks: bad range [", lo, ", ",
              hi, "]");
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  lo = std::floor(lo / step + 1e-9) * step;
  hi = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> t;
  const int n = int(std::lround((hi - lo) / step));
  for (int i = 0; i <= n; ++i) {
    double v = lo + i * step;
    if (std::abs(v) < step * 1e-9) v = 0;
    t.push_back(v);
  }
  return t;
}

double PlotFrame::px(double x) const {
  const double a = axis_value(x_min, log_x), b = axis_value(x_max, log_x);
  double v = (log_x && !(x > 0)) ? a : axis_value(x, log_x);
  v = std::min(std::max(v, a), b);
  return left + (v - a) / (b - a) * plot_w;
}

double PlotFrame::py(double y) const {
  const double a = axis_value(y_min, log_y), b = axis_value(y_max, log_y);
  double v = (log_y && !(y > 0)) ? a : axis_value(y, log_y);
  v = std::min(std::max(v, a), b);
  return top + plot_h - (v - a) / (b - a) * plot_h;
}

PlotFrame plot_frame(const std::vector<PlotSeries>& series, const PlotOptions& opt) {
  CTDET_CHECK(opt.width > opt.left + opt.right && opt.height > opt.top + opt.bottom, "svg chart '", opt.title,
              "': size ", opt.width, "x", opt.height, " leaves no plot area");
  for (const auto& s : series)
    CTDET_CHECK(s.x.size() == s.y.size(), "svg chart '", opt.title, "': series '", s.name, "' has ", s.x.size(),
                " x values and ", s.y.size(), " y values");
  const Axis ax = resolve_axis(series, true, opt), ay = resolve_axis(series, false, opt);
  PlotFrame f;
  f.x_min = ax.lo;
  f.x_max = ax.hi;
  f.y_min = ay.lo;
  f.y_max = ay.hi;
  f.log_x = opt.log_x;
  f.log_y = opt.log_y;
  f.left = opt.left;
  f.top = opt.top;
  f.plot_w = opt.width - opt.left - opt.right;
  f.plot_h = opt.height - opt.top - opt.bottom;
  return f;
}

std::string svg_line_chart(const std::vector<PlotSeries>& series, const PlotOptions& opt) {
  const PlotFrame f = plot_frame(series, opt);
  const Axis ax = resolve_axis(series, true, opt), ay = resolve_axis(series, false, opt);
  const std::string W = std::to_string(opt.width), H = std::to_string(opt.height);
  std::string s = "<svg class=\"chart\" width=\"" + W + "\" height=\"" + H + "\" viewBox=\"0 0 " + W + " " + H +
                  "\" role=\"img\" aria-label=\"" + xml_escape(opt.title) + "\"";
  if (!opt.id.empty()) s += " id=\"" + xml_escape(opt.id) + "\"";
  s += " font-family=\"sans-serif\" font-size=\"11\">\n";
  const double x0 = f.left, x1 = f.left + f.plot_w, y0 = f.top, y1 = f.top + f.plot_h;
  s += "<rect x=\"" + fmt2(x0) + "\" y=\"" + fmt2(y0) + "\" width=\"" + fmt2(f.plot_w) + "\" height=\"" +
       fmt2(f.plot_h) + "\" fill=\"#fff\" stroke=\"#888\"/>\n";
  // Grid and tick labels.
  for (size_t i = 0; i < ax.ticks.size(); ++i) {
    const double p = f.px(ax.ticks[i]);
    s += "<line x1=\"" + fmt2(p) + "\" y1=\"" + fmt2(y0) + "\" x2=\"" + fmt2(p) + "\" y2=\"" + fmt2(y1) +
         "\" stroke=\"#e4e4e4\"/>\n";
    s += "<text x=\"" + fmt2(p) + "\" y=\"" + fmt2(y1 + 14) + "\" text-anchor=\"middle\">" + xml_escape(ax.labels[i]) +
         "</text>\n";
  }
  for (size_t i = 0; i < ay.ticks.size(); ++i) {
    const double p = f.py(ay.ticks[i]);
    s += "<line x1=\"" + fmt2(x0) + "\" y1=\"" + fmt2(p) + "\" x2=\"" + fmt2(x1) + "\" y2=\"" + fmt2(p) +
         "\" stroke=\"#e4e4e4\"/>\n";
    s += "<text x=\"" + fmt2(x0 - 5) + "\" y=\"" + fmt2(p + 4) + "\" text-anchor=\"end\">" + xml_escape(ay.labels[i]) +
         "</text>\n";
  }
  if (!opt.title.empty())
    s += "<text x=\"" + fmt2(opt.width / 2.0) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">" +
         xml_escape(opt.title) + "</text>\n";
  if (!opt.x_label.empty())
    s += "<text x=\"" + fmt2(x0 + f.plot_w / 2) + "\" y=\"" + fmt2(opt.height - 8.0) + "\" text-anchor=\"middle\">" +
         xml_escape(opt.x_label) + "</text>\n";
  if (!opt.y_label.empty())
    s += "<text transform=\"translate(14," + fmt2(y0 + f.plot_h / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
         xml_escape(opt.y_label) + "</text>\n";
  // Series.
  for (const auto& ser : series) {
    const std::string color = xml_escape(ser.color);
    if (ser.line) {
      std::string pts;
      auto flush = [&]() {
        if (pts.empty()) return;
        s += "<polyline class=\"series\" data-name=\"" + xml_escape(ser.name) + "\" fill=\"none\" stroke=\"" + color +
             "\" stroke-width=\"" + fmt2(ser.stroke_width) + "\"" +
             (ser.dashed ? " stroke-dasharray=\"6 4\"" : "") + " points=\"" + pts + "\"/>\n";
        pts.clear();
      };
      for (size_t i = 0; i < ser.x.size(); ++i) {
        if (std::isnan(ser.x[i]) || std::isnan(ser.y[i])) {
          flush();
          continue;
        }
        if (!pts.empty()) pts += ' ';
        pts += fmt2(f.px(ser.x[i])) + "," + fmt2(f.py(ser.y[i]));
      }
      flush();
    }
    if (ser.markers) {
      for (size_t i = 0; i < ser.x.size(); ++i) {
        if (std::isnan(ser.x[i]) || std::isnan(ser.y[i])) continue;
        s += "<circle class=\"marker\" cx=\"" + fmt2(f.px(ser.x[i])) + "\" cy=\"" + fmt2(f.py(ser.y[i])) + "\" r=\"" +
             fmt2(ser.marker_radius) + "\" fill=\"" + color + "\" stroke=\"#fff\" stroke-width=\"1\"/>\n";
      }
    }
  }
  // Legend.
  std::vector<const PlotSeries*> named;
  for (const auto& ser : series)
    if (!ser.name.empty()) named.push_back(&ser);
  if (!named.empty() && opt.legend != LegendCorner::kNone) {
    size_t longest = 0;
    for (auto* p : named) longest = std::max(longest, p->name.size());
    const double lw = 34 + 6.2 * double(std::min<size_t>(longest, 40)), lh = 8 + 15.0 * named.size();
    const bool right = opt.legend == LegendCorner::kTopRight || opt.legend == LegendCorner::kBottomRight;
    const bool top = opt.legend == LegendCorner::kTopRight || opt.legend == LegendCorner::kTopLeft;
    const double lx = right ? x1 - lw - 6 : x0 + 6, ly = top ? y0 + 6 : y1 - lh - 6;
    s += "<g class=\"legend\"><rect x=\"" + fmt2(lx) + "\" y=\"" + fmt2(ly) + "\" width=\"" + fmt2(lw) + "\" height=\"" +
         fmt2(lh) + "\" fill=\"#fff\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n";
    for (size_t i = 0; i < named.size(); ++i) {
      const auto* p = named[i];
      const double yy = ly + 12 + 15.0 * i;
      const std::string color = xml_escape(p->color);
      if (p->line)
        s += "<line x1=\"" + fmt2(lx + 6) + "\" y1=\"" + fmt2(yy) + "\" x2=\"" + fmt2(lx + 24) + "\" y2=\"" + fmt2(yy) +
             "\" stroke=\"" + color + "\" stroke-width=\"" + fmt2(p->stroke_width) + "\"" +
             (p->dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>";
      if (p->markers)
        s += "<circle cx=\"" + fmt2(lx + 15) + "\" cy=\"" + fmt2(yy) + "\" r=\"" + fmt2(p->marker_radius) + "\" fill=\"" +
             color + "\"/>";
      s += "<text x=\"" + fmt2(lx + 29) + "\" y=\"" + fmt2(yy + 4) + "\">" + xml_escape(p->name) + "</text>\n";
    }
    s += "</g>\n";
  }
  s += "</svg>";
  return s;
}

}  // namespace ctdet
