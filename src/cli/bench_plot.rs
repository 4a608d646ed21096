//! The SVG chart of `h3fleet bench --plot`: the cumulative distributions of
//! first-request latency of both runs, written directly (two polylines,
//! axes, labels, one- and two-RTT reference lines).

use std::fmt::Write as _;

/// The drawing area and the scale of both axes.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    bottom: f64,
    top: f64,
    right: f64,
    max_ms: f64,
}

impl Frame {
    fn x(&self, ms: f64) -> f64 {
        self.left + (ms / self.max_ms) * (self.w - self.left - self.right)
    }

    fn y(&self, frac: f64) -> f64 {
        self.h - self.bottom - frac * (self.h - self.bottom - self.top)
    }

    /// The steps of one run's CDF as polyline points.
    fn line(&self, samples: &[f64]) -> String {
        let n = samples.len() as f64;
        let mut points = format!("{:.1},{:.1}", self.x(0.0), self.y(0.0));
        for (i, ms) in samples.iter().enumerate() {
            let (x, y0, y1) = (self.x(*ms), self.y(i as f64 / n), self.y((i + 1) as f64 / n));
            let _ = write!(points, " {x:.1},{y0:.1} {x:.1},{y1:.1}");
        }
        points
    }

    /// Grid lines with percentages, and the millisecond ticks.
    fn axes(&self, svg: &mut String) {
        for i in 0..=4 {
            let frac = f64::from(i) / 4.0;
            let y = self.y(frac);
            let _ = writeln!(
                svg,
                "<line x1=\"{}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0} %</text>",
                self.left,
                self.w - self.right,
                self.left - 6.0,
                y + 4.0,
                100.0 * frac,
            );
            let ms = self.max_ms * frac;
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{ms:.0}</text>",
                self.x(ms),
                self.h - self.bottom + 18.0,
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">milliseconds</text>",
            (self.w + self.left) / 2.0,
            self.h - 10.0
        );
    }

    /// Dashed lines at one and two round trips, for reference.
    fn rtt_lines(&self, svg: &mut String, rtt_ms: u64) {
        for (rtts, label) in [(1.0, "1 RTT"), (2.0, "2 RTT")] {
            let ms = rtts * rtt_ms as f64;
            if ms >= self.max_ms {
                continue;
            }
            let x = self.x(ms);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4 4\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">{label}</text>",
                self.y(0.0),
                self.y(1.0),
                x + 4.0,
                self.y(0.5),
            );
        }
    }
}

/// The chart of both runs' first-request latencies (in milliseconds).
pub(crate) fn plot_svg(shared: &[f64], local: &[f64], rtt_ms: u64) -> String {
    let max_ms = shared.iter().chain(local).copied().fold(1.0_f64, f64::max) * 1.05;
    let f = Frame {
        w: 720.0,
        h: 420.0,
        left: 60.0,
        bottom: 50.0,
        top: 30.0,
        right: 20.0,
        max_ms,
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" font-size=\"14\">First request latency, CDF ({rtt_ms} ms RTT)</text>\n",
        f.w, f.h, f.left
    );
    f.axes(&mut svg);
    for (samples, colour) in [(shared, "#1f77b4"), (local, "#ff7f0e")] {
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            f.line(samples)
        );
    }
    f.rtt_lines(&mut svg, rtt_ms);
    // The legend sits bottom right, where both curves have reached 100 %.
    let lx = f.w - 130.0;
    let _ = write!(
        svg,
        "<text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"#1f77b4\">shared cache</text>\n<text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"#ff7f0e\">local-only</text>\n</svg>\n",
        f.h - f.bottom - 34.0,
        f.h - f.bottom - 16.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_both_curves_and_the_rtt_lines() {
        let svg = plot_svg(&[10.0, 20.0, 30.0], &[40.0, 50.0, 60.0], 20);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("1 RTT") && svg.contains("2 RTT"));
    }
}
