//! Process-wide logging: one `tracing` subscriber writing to stderr, human
//! or JSON. Stderr only, because client commands print their answers on
//! stdout and scripts parse them.

use std::io::IsTerminal;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The filter when none is configured: our own info lines, and only
/// openraft's warnings (its info lines fire on every election and snapshot).
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, span fields as `span{key=value}:`.
    #[default]
    Human,
    /// One JSON object per line, with the current span and the span list.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected human or json".into()),
        }
    }
}

/// Parses a filter directive (`info,openraft=warn`, `oneid=debug`, ...).
pub fn filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives).map_err(|e| e.to_string())
}

/// Installs the subscriber; call once, before anything logs.
pub fn init(format: LogFormat, directives: &str) -> anyhow::Result<()> {
    let filter = filter(directives).map_err(|e| anyhow::anyhow!("log filter: {e}"))?;
    // Colour codes only for a terminal: in a log file they are noise, and
    // writing them cost ~1 % of a busy node's CPU (every request's span).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_filters_are_checked() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("human".parse::<LogFormat>(), Ok(LogFormat::Human));
        assert!("xml".parse::<LogFormat>().is_err());
        assert!(filter(DEFAULT_FILTER).is_ok());
        assert!(filter("oneid=loud").is_err());
    }
}
