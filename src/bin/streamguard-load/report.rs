//! What a run shows: the progress bar, the final table, the JSON result and
//! the SVG plot.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde_json::json;

use crate::Args;
use crate::sim::Outcome;

/// A progress bar of `len` steps on stderr (hidden with `--quiet` or when
/// stderr is not a terminal).
pub fn bar(args: &Args, len: u64, what: &str) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

fn quantiles(o: &Outcome) -> [(&'static str, f64); 5] {
    let ms = |q: f64| o.latency.value_at_quantile(q) as f64 / 1000.0;
    [
        ("p50", ms(0.5)),
        ("p90", ms(0.9)),
        ("p99", ms(0.99)),
        ("p99.9", ms(0.999)),
        ("max", o.latency.max() as f64 / 1000.0),
    ]
}

fn rate(o: &Outcome) -> f64 {
    o.latency.len() as f64 / o.elapsed.as_secs_f64()
}

pub fn print_table(o: &Outcome) {
    println!("{:<24} {:>14}", "requests", o.latency.len());
    println!("{:<24} {:>14.0}", "requests/s", rate(o));
    for (kind, n) in &o.per_kind {
        println!("{:<24} {n:>14}", format!("  {kind}"));
    }
    for (name, ms) in quantiles(o) {
        println!("{:<24} {ms:>11.3} ms", format!("latency {name}"));
    }
    for (status, n) in &o.status {
        let label = if *status == 0 {
            "status: connection failed".to_owned()
        } else {
            format!("status {status}")
        };
        println!("{label:<24} {n:>14}");
    }
    println!("{:<24} {:>14}", "grants", o.grants);
    println!("{:<24} {:>14}", "denials (limit)", o.denials);
    for (rule, n) in &o.denials_by_rule {
        println!("{:<24} {n:>14}", format!("  by rule {rule}"));
    }
    println!("{:<24} {:>14}", "id conflicts", o.conflicts);
    println!("{:<24} {:>14}", "terminates sent", o.terminates_sent);
    println!("{:<24} {:>14}", "evictions", o.evictions);
    println!("{:<24} {:>14}", "replaced", o.replaced);
    for (reason, n) in &o.ended {
        println!("{:<24} {n:>14}", format!("heartbeat refused: {reason}"));
    }
    println!("{:<24} {:>14}", "resumed", o.resumes.count);
    println!("{:<24} {:>14}", "resume refused (409)", o.resume_refused);
    println!(
        "{:<24} {:>14}",
        "unavailable (5xx/failed)", o.unavailable.count
    );
    println!("{:<24} {:>14}", "audit violations", o.violations);
}

pub fn write_json(args: &Args, o: &Outcome, path: &Path) -> anyhow::Result<()> {
    let latency: serde_json::Map<_, _> = quantiles(o)
        .into_iter()
        .map(|(k, v)| (format!("{k}_ms"), json!(v)))
        .collect();
    let status: serde_json::Map<_, _> = o
        .status
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let result = json!({
        "config": {
            "target": args.target,
            "viewers": args.viewers,
            "heartbeat_s": args.heartbeat.as_secs_f64(),
            "session_s": args.session.as_secs_f64(),
            "share": args.share,
            "devices_per_account": args.devices_per_account,
            "mix": args.mix.map(|m| format!("{}:{}:{}", m.start, m.heartbeat, m.stop)),
            "rate": args.rate,
            "loop": format!("{:?}", args.mode).to_lowercase(),
            "connections": args.connections,
            "duration_s": args.duration.as_secs_f64(),
            "identity": if args.jwt_secret.is_some() { "jwt" } else { "header" },
            "plans": args.plans,
            "plan_header": args.plan_header,
        },
        "preload": o.preload.map(|(n, took, failed)| json!({
            "streams": n, "seconds": took.as_secs_f64(), "refused": failed,
        })),
        "started_unix_s": o.started_unix_s,
        "elapsed_s": o.elapsed.as_secs_f64(),
        "requests": o.latency.len(),
        "requests_per_s": rate(o),
        "by_kind": o.per_kind,
        "latency": latency,
        "status": status,
        "grants": o.grants,
        "denials": o.denials,
        "denials_by_rule": o.denials_by_rule,
        "conflicts": o.conflicts,
        "terminates_sent": o.terminates_sent,
        "evictions": o.evictions,
        "replaced": o.replaced,
        "heartbeat_refused": o.ended,
        "resumed": o.resumes,
        "resume_refused": o.resume_refused,
        "unavailable": o.unavailable,
        "audit": { "violations": o.violations, "examples": o.examples },
        "series": o.series,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads one latency line's value out of a second.
type Percentile = fn(&crate::sim::Second) -> f64;

/// Requests per second above, latency percentiles below, one point a second.
pub fn plot(o: &Outcome, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(330);
    let s = &o.series;
    let t_max = s.last().map_or(1, |x| x.t).max(1);
    let rps_max = s.iter().map(|x| x.requests).max().unwrap_or(1).max(1) as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption("throughput (requests/s)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..t_max, 0f64..rps_max * 1.1)?;
    chart.configure_mesh().x_desc("s").draw()?;
    chart.draw_series(LineSeries::new(
        s.iter().map(|x| (x.t, x.requests as f64)),
        &BLUE,
    ))?;
    let lat_max = s.iter().map(|x| x.p99_ms).fold(0.1, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("latency (ms, from the scheduled send)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..t_max, 0f64..lat_max)?;
    chart.configure_mesh().x_desc("s").draw()?;
    let lines: [(&str, RGBColor, Percentile); 4] = [
        ("p50", GREEN, |x| x.p50_ms),
        ("p90", BLUE, |x| x.p90_ms),
        ("p99", MAGENTA, |x| x.p99_ms),
        ("max", RED, |x| x.max_ms),
    ];
    for (name, color, value) in lines {
        chart
            .draw_series(LineSeries::new(
                s.iter().map(|x| (x.t, value(x).min(lat_max))),
                &color,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
