//! Two small SVG plots, written by hand so the benchmark needs no plotting
//! library: a horizontal bar chart and a latency distribution (CDF).

use std::fmt::Write as _;

const W: f64 = 640.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}

/// Horizontal bars, one per `(label, value)`, scaled to the largest.
pub(crate) fn bars(title: &str, unit: &str, rows: &[(String, f64)]) -> String {
    let h = 60.0 + 34.0 * rows.len() as f64;
    let max = rows.iter().map(|r| r.1).fold(1e-9, f64::max);
    // Bars start after the longest label (about 7 px a character at 13 px).
    let longest = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let x0 = (20.0 + 7.0 * longest as f64).max(230.0);
    let w = x0 + 420.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = write!(
        s,
        r#"<text x="10" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 44.0 + 34.0 * i as f64;
        let len = 280.0 * v / max;
        let _ = write!(
            s,
            r#"<text x="10" y="{}">{}</text>"#,
            y + 17.0,
            escape(label)
        );
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="{y}" width="{len:.1}" height="24" fill="#4a7bd0"/>"##
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}">{v:.0} {}</text>"#,
            x0 + 6.0 + len,
            y + 17.0,
            escape(unit)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The cumulative distribution of `samples_ms` (sorted ascending).
pub(crate) fn cdf(title: &str, samples_ms: &[f64]) -> String {
    let (h, left, bottom) = (360.0, 60.0, 310.0);
    let max = samples_ms.last().copied().unwrap_or(1.0).max(1e-6);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
        W - 20.0
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="40" x2="{left}" y2="{bottom}" stroke="#333"/>"##
    );
    let plot_w = W - 20.0 - left;
    let mut path = String::new();
    let n = samples_ms.len().max(1) as f64;
    for (i, v) in samples_ms.iter().enumerate() {
        let x = left + plot_w * v / max;
        let y = bottom - (bottom - 40.0) * (i as f64 + 1.0) / n;
        let _ = write!(path, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    let _ = write!(
        s,
        r##"<path d="{path}" fill="none" stroke="#4a7bd0" stroke-width="2"/>"##
    );
    for q in [0.5, 0.99] {
        let y = bottom - (bottom - 40.0) * q;
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#bbb" stroke-dasharray="4"/>"##,
            W - 20.0
        );
        let _ = write!(s, r#"<text x="8" y="{:.1}">p{}</text>"#, y + 4.0, q * 100.0);
    }
    let _ = write!(s, r#"<text x="{left}" y="{}">0 ms</text>"#, bottom + 18.0);
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{max:.2} ms</text>"#,
        W - 20.0,
        bottom + 18.0
    );
    s.push_str("</svg>\n");
    s
}
