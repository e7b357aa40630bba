//! `sse-loadgen plot`: an SVG chart from JSON results.

use clap::Args;

#[derive(Args)]
pub(crate) struct PlotArgs {
    /// JSON result files
    files: Vec<std::path::PathBuf>,
}

pub(crate) fn main(_args: &PlotArgs) -> Result<(), String> {
    Err("todo".into())
}
