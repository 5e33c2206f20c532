//! Progress of an index build on stderr: an indicatif bar on a terminal, else a plain line about
//! every 10 s (CI logs, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use img2prompt::{BuildObserver, BuildProgress};

/// Seconds between two progress lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Draws an [`IndexBuilder`](img2prompt::IndexBuilder)'s progress.
pub enum BuildDisplay {
    /// A bar (count, rate, ETA when the total is known).
    Bar(Mutex<Option<indicatif::ProgressBar>>),
    /// Log lines, the last one's time.
    Log(Mutex<Instant>),
}

impl BuildDisplay {
    /// A bar when stderr is a terminal, else log lines.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            BuildDisplay::Bar(Mutex::new(None))
        } else {
            BuildDisplay::Log(Mutex::new(Instant::now()))
        }
    }
}

fn new_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} prompts (ETA {eta}) \
             {msg}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} [{elapsed_precise}] {human_pos} prompts {msg}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

impl BuildObserver for BuildDisplay {
    fn progress(&self, p: &BuildProgress) {
        match self {
            BuildDisplay::Bar(bar) => {
                let Ok(mut bar) = bar.lock() else { return };
                let bar = bar.get_or_insert_with(|| {
                    let bar = new_bar(p.expected_records);
                    bar.set_position(p.resumed);
                    bar.reset_eta();
                    bar
                });
                bar.set_position(p.indexed);
                bar.set_message(format!(
                    "{:.1} prompts/s, {} records read",
                    p.prompts_per_second(),
                    p.records_read
                ));
            }
            BuildDisplay::Log(last) => {
                let Ok(mut last) = last.lock() else { return };
                if last.elapsed() < LOG_EVERY {
                    return;
                }
                *last = Instant::now();
                let total = p
                    .expected_records
                    .map(|n| format!(" of at most {n}"))
                    .unwrap_or_default();
                eprintln!(
                    "index build: {} prompts indexed{total}, {} records read, {:.1} prompts/s",
                    p.indexed,
                    p.records_read,
                    p.prompts_per_second()
                );
            }
        }
    }

    fn finished(&self) {
        if let BuildDisplay::Bar(bar) = self
            && let Ok(bar) = bar.lock()
            && let Some(bar) = bar.as_ref()
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}
