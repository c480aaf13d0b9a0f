//! Renders the engine's progress events: an indicatif bar on a terminal (bytes, %, throughput,
//! ETA), one JSON object per line on stdout with `--json`, or nothing.

use std::io::{IsTerminal as _, Write as _};

use hoist_core::{BatchEvent, ProgressEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A bar on stderr (only when stderr is a terminal).
    Bar,
    /// JSON lines on stdout.
    Json,
    /// No bar (not a terminal, or `--no-progress`), but notices such as "resuming" on stderr.
    Plain,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Picks the mode from the flags; the bar needs a terminal.
    pub(crate) fn from_flags(json: bool, no_progress: bool, quiet: bool) -> Self {
        if json {
            Self::Json
        } else if quiet {
            Self::Quiet
        } else if no_progress || !std::io::stderr().is_terminal() {
            Self::Plain
        } else {
            Self::Bar
        }
    }
}

/// Draws events until the sender is dropped.
pub(crate) async fn render(mode: Mode, mut rx: UnboundedReceiver<ProgressEvent>) {
    let mut bar: Option<ProgressBar> = None;
    while let Some(event) = rx.recv().await {
        match mode {
            Mode::Quiet => {}
            Mode::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            Mode::Bar => draw(&mut bar, &event),
            Mode::Plain => {
                if let Some(line) = resuming(&event) {
                    eprintln!("{line}");
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// "resuming: 37/128 parts already uploaded" for a resumed start.
fn resuming(event: &ProgressEvent) -> Option<String> {
    match event {
        ProgressEvent::Started { resumed_parts, part_count, .. } if *resumed_parts > 0 => {
            let total = part_count.map_or_else(|| "?".to_owned(), |n| n.to_string());
            Some(format!("resuming: {resumed_parts}/{total} parts already uploaded"))
        }
        _ => None,
    }
}

fn draw(bar: &mut Option<ProgressBar>, event: &ProgressEvent) {
    match event {
        ProgressEvent::Started { size, key, .. } => {
            let b = match size {
                Some(n) => ProgressBar::with_draw_target(Some(*n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if size.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {percent}% {binary_bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {spinner} {bytes} {binary_bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(key.clone());
            if let Some(line) = resuming(event) {
                b.println(line);
            }
            *bar = Some(b);
        }
        ProgressEvent::PartDone { bytes_done, .. } => {
            if let Some(b) = bar {
                b.set_position(*bytes_done);
            }
        }
        ProgressEvent::Retry { part_number, attempt, delay_ms, error } => {
            if let Some(b) = bar {
                let part = part_number.map(|n| format!("part {n} ")).unwrap_or_default();
                b.println(format!("retrying {part}(attempt {attempt} failed: {error}; next in {delay_ms} ms)"));
            }
        }
        ProgressEvent::Completed { size, .. } => {
            if let Some(b) = bar {
                b.set_position(*size);
            }
        }
        ProgressEvent::Failed { .. } => {}
    }
}

/// Draws a batch's events until the sender is dropped: one bar for the batch (files done/found,
/// bytes, rate, ETA), JSON lines, or in plain mode the files not uploaded on stderr.
pub(crate) async fn render_batch(mode: Mode, mut rx: UnboundedReceiver<BatchEvent>) {
    let bar = (mode == Mode::Bar).then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    let (mut files_done, mut files_found, mut walk_over) = (0u64, 0u64, false);
    while let Some(event) = rx.recv().await {
        match mode {
            Mode::Quiet => continue,
            Mode::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                continue;
            }
            Mode::Plain | Mode::Bar => {}
        }
        let note = match &event {
            BatchEvent::Ignored { path, reason } => Some(format!("ignored {path}: {reason}")),
            BatchEvent::FileFailed { path, error, .. } => Some(format!("failed {path}: {error}")),
            BatchEvent::Retry { key, part_number, attempt, error, .. } => {
                let part = part_number.map(|n| format!(" part {n}")).unwrap_or_default();
                Some(format!("retrying {key}{part} (attempt {attempt} failed: {error})"))
            }
            _ => None,
        };
        match (&bar, note) {
            (Some(b), Some(line)) => b.println(line),
            (None, Some(line)) => eprintln!("{line}"),
            _ => {}
        }
        let Some(b) = &bar else { continue };
        match &event {
            BatchEvent::Walked { files, bytes, finished } => {
                files_found = *files;
                walk_over = *finished;
                b.set_length(*bytes);
            }
            BatchEvent::FileDone { size, parts, .. } => {
                files_done += 1;
                if *parts == 0 {
                    b.inc(*size);
                }
            }
            BatchEvent::FileSkipped { size, .. } => {
                files_done += 1;
                b.inc(*size);
            }
            BatchEvent::FileFailed { .. } => files_done += 1,
            BatchEvent::PartDone { size, .. } => b.inc(*size),
            BatchEvent::Ignored { .. } | BatchEvent::Retry { .. } | BatchEvent::Summary(_) => {}
        }
        let still_walking = if walk_over { "" } else { "+" };
        b.set_message(format!("{files_done}/{}{still_walking} files", files_found.max(files_done)));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// Prints a line on stdout; a closed stdout (`hoist … | head`) is not an error worth a panic.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
