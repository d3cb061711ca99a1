//! The table the tool prints: one row per figure, throughput beside the same run's `/healthz`.

use crate::http::Outcome;

pub struct Row {
    pub scenario: String,
    pub result: String,
    /// The `/healthz` rate measured just before, and this figure's ratio to it.
    pub healthz: Option<(f64, f64)>,
    pub target: String,
    /// `None` where there is no target to meet.
    pub met: Option<bool>,
    pub failed: u64,
}

impl Row {
    /// A throughput figure, judged as a ratio to `/healthz` when `min_ratio` is given, or
    /// against an absolute rate when `min_rate` is.
    pub fn rate(
        scenario: &str,
        outcome: &Outcome,
        healthz: f64,
        min_ratio: Option<f64>,
        min_rate: Option<f64>,
    ) -> Self {
        let rate = outcome.per_sec();
        let ratio = rate / healthz;
        let (target, met) = match (min_ratio, min_rate) {
            (Some(min), _) => (format!("≥ {min:.2}× healthz"), Some(ratio >= min)),
            (None, Some(min)) => (format!("≥ {min:.0}/s"), Some(rate >= min)),
            (None, None) => (String::new(), None),
        };
        Self {
            scenario: scenario.into(),
            result: format!(
                "{rate:.0}/s ({} in {:.1}s)",
                outcome.ok,
                outcome.elapsed.as_secs_f64()
            ),
            healthz: Some((healthz, ratio)),
            target,
            met,
            failed: outcome.failed,
        }
    }

    pub fn fact(
        scenario: &str,
        result: String,
        target: &str,
        met: Option<bool>,
        failed: u64,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            result,
            healthz: None,
            target: target.into(),
            met,
            failed,
        }
    }
}

pub fn print(rows: &[Row]) {
    println!();
    println!(
        "{:<34} {:>30} {:>12} {:>7} {:>18} {:>7} {:>7}",
        "scenario", "result", "healthz/s", "ratio", "target", "", "errors"
    );
    for row in rows {
        let (healthz, ratio) = row
            .healthz
            .map_or((String::new(), String::new()), |(h, r)| {
                (format!("{h:.0}"), format!("{r:.2}"))
            });
        let verdict = match row.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{:<34} {:>30} {:>12} {:>7} {:>18} {:>7} {:>7}",
            row.scenario, row.result, healthz, ratio, row.target, verdict, row.failed
        );
    }
}
