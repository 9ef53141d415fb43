//! Charts drawn on the server as SVG coordinates (the templates write the `<svg>`): a line over
//! time from an agent's stored samples, and bars for a pipeline's recent runs. No script draws
//! them, so they work without JavaScript and inside the page's Content-Security-Policy.

/// Width and height of every chart's SVG view box; the page scales it to its width.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 120.0;

/// A value over time, as SVG polylines (a gap in the samples breaks the line).
pub struct LineChart {
    pub title: String,
    /// Each run of samples without a gap, as a polyline's `points`.
    pub lines: Vec<String>,
    /// The newest value and the highest, as shown beside the chart ("" without samples).
    pub latest: String,
    pub peak: String,
    /// The value the top of the chart stands for, as shown.
    pub top: String,
}

impl LineChart {
    /// `samples` are `(seconds since the epoch, value)` in time order, drawn from `start` to
    /// `end` (seconds) against `0..=top`; samples further apart than `gap` seconds are not
    /// joined. `show` writes a value as the page shows it.
    pub fn new(
        title: &str,
        samples: &[(i64, f64)],
        (start, end): (i64, i64),
        top: f64,
        gap: i64,
        show: impl Fn(f64) -> String,
    ) -> LineChart {
        let span = (end - start).max(1) as f64;
        let top_value = if top > 0.0 { top } else { 1.0 };
        let mut lines = Vec::new();
        let mut line: Vec<(f64, f64)> = Vec::new();
        let mut previous: Option<i64> = None;
        for &(at, value) in samples {
            if previous.is_some_and(|before| at - before > gap) && !line.is_empty() {
                lines.push(points(&line));
                line.clear();
            }
            previous = Some(at);
            // One point per unit of width: samples that land on the same one keep the highest,
            // so a day of samples stays a few hundred points and peaks stay visible.
            let x = ((at - start) as f64 / span * WIDTH)
                .clamp(0.0, WIDTH)
                .round();
            let y = HEIGHT - (value / top_value).clamp(0.0, 1.0) * HEIGHT;
            match line.last_mut() {
                Some((last_x, last_y)) if *last_x == x => *last_y = last_y.min(y),
                _ => line.push((x, y)),
            }
        }
        if !line.is_empty() {
            lines.push(points(&line));
        }
        let peak = samples
            .iter()
            .map(|(_, value)| *value)
            .fold(None, |most: Option<f64>, value| {
                Some(most.map_or(value, |most| most.max(value)))
            });
        LineChart {
            title: title.to_owned(),
            lines,
            latest: samples
                .last()
                .map(|(_, value)| show(*value))
                .unwrap_or_default(),
            peak: peak.map(&show).unwrap_or_default(),
            top: show(top_value),
        }
    }

    /// The sentence a screen reader reads for the chart.
    pub fn description(&self) -> String {
        if self.lines.is_empty() {
            format!("{}: no samples in this range", self.title)
        } else {
            format!(
                "{}: latest {}, highest {}",
                self.title, self.latest, self.peak
            )
        }
    }
}

/// A polyline's `points` attribute.
fn points(line: &[(f64, f64)]) -> String {
    line.iter()
        .map(|(x, y)| format!("{x:.0},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One bar of a bar chart, in SVG coordinates, with the page it links to.
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// A status class (`status-failed`) colouring it.
    pub class: String,
    /// What the bar stands for, as its tooltip and accessible name.
    pub label: String,
    pub href: String,
}

/// Bars of `values` (oldest first), scaled so the largest fills the chart's height.
pub fn bars(values: Vec<(f64, String, String, String)>) -> Vec<Bar> {
    let most = values
        .iter()
        .map(|(value, ..)| *value)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let slot = WIDTH / values.len().max(1) as f64;
    values
        .into_iter()
        .enumerate()
        .map(|(index, (value, class, label, href))| {
            // A bar stays visible however short its value.
            let height = (value / most * HEIGHT).clamp(2.0, HEIGHT);
            Bar {
                x: index as f64 * slot + slot * 0.1,
                y: HEIGHT - height,
                width: slot * 0.8,
                height,
                class,
                label,
                href,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent(value: f64) -> String {
        format!("{value:.0}%")
    }

    #[test]
    fn a_line_spans_the_range_and_breaks_at_gaps() {
        let samples = [(1000, 0.0), (1010, 50.0), (1020, 100.0), (1100, 25.0)];
        let chart = LineChart::new("CPU", &samples, (1000, 1100), 100.0, 30, percent);
        assert_eq!(chart.lines, ["0,120.0 60,60.0 120,0.0", "600,90.0"]);
        assert_eq!(chart.latest, "25%");
        assert_eq!(chart.peak, "100%");
        assert_eq!(chart.description(), "CPU: latest 25%, highest 100%");
    }

    #[test]
    fn samples_on_one_point_keep_the_highest() {
        let samples: Vec<(i64, f64)> = (0..6000).map(|at| (at, (at % 10) as f64)).collect();
        let chart = LineChart::new("CPU", &samples, (0, 6000), 10.0, 60, percent);
        assert_eq!(chart.lines.len(), 1);
        let points: Vec<&str> = chart.lines[0].split(' ').collect();
        assert_eq!(points.len(), 601);
        assert_eq!(
            points[1], "1,12.0",
            "the highest of the samples at x = 1 is 9"
        );
    }

    #[test]
    fn values_outside_the_chart_are_clamped_and_no_samples_say_so() {
        let chart = LineChart::new(
            "Memory",
            &[(5, 150.0), (6, -3.0)],
            (0, 10),
            100.0,
            60,
            percent,
        );
        assert_eq!(chart.lines, ["300,0.0 360,120.0"]);
        let empty = LineChart::new("Memory", &[], (0, 10), 100.0, 60, percent);
        assert!(empty.lines.is_empty());
        assert_eq!(empty.description(), "Memory: no samples in this range");
    }

    #[test]
    fn bars_scale_to_the_largest_and_stay_visible() {
        let bars = bars(vec![
            (10.0, "status-succeeded".into(), "a".into(), "/a".into()),
            (0.0, "status-failed".into(), "b".into(), "/b".into()),
            (40.0, "status-succeeded".into(), "c".into(), "/c".into()),
        ]);
        let heights: Vec<f64> = bars.iter().map(|bar| bar.height).collect();
        assert_eq!(heights, [30.0, 2.0, 120.0]);
        assert_eq!(bars[2].y, 0.0);
        assert_eq!(bars[1].x, 220.0);
        assert!(bars.iter().all(|bar| bar.width == 160.0));
    }
}
