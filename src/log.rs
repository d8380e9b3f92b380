//! Log levels and the log callback type. Protocol engines never pass a
//! password or token to the log: credentials are replaced before logging.

use std::sync::Arc;

pub(crate) const ERROR: u32 = 1;
pub(crate) const WARN: u32 = 2;
pub(crate) const INFO: u32 = 3;
pub(crate) const DEBUG: u32 = 4;
/// Every protocol line (credentials and message bodies left out).
pub(crate) const TRACE: u32 = 5;

/// (level, line). Called on whatever herald thread logs.
pub type LogFn = Arc<dyn Fn(u32, &str) + Send + Sync>;

/// Writes protocol lines to a client's log at TRACE level; a no-op tracer
/// serves unit tests. Checking `enabled` first keeps formatting off the hot path.
#[derive(Clone, Default)]
pub struct Tracer {
    sink: Option<LogFn>,
    enabled: Option<LevelFn>,
}

/// Is this level logged?
pub type LevelFn = Arc<dyn Fn(u32) -> bool + Send + Sync>;

impl Tracer {
    pub fn new(sink: LogFn, enabled: LevelFn) -> Tracer {
        Tracer {
            sink: Some(sink),
            enabled: Some(enabled),
        }
    }

    pub fn enabled(&self, level: u32) -> bool {
        self.enabled.as_ref().is_some_and(|f| f(level))
    }

    /// Logs each CRLF-terminated command line in `data` as "C: ..." at TRACE.
    pub fn client_lines(&self, data: &[u8]) {
        if self.enabled(TRACE) {
            for line in String::from_utf8_lossy(data)
                .split("\r\n")
                .filter(|l| !l.is_empty())
            {
                self.log(TRACE, || format!("C: {line}"));
            }
        }
    }

    pub fn log(&self, level: u32, line: impl FnOnce() -> String) {
        if self.enabled(level) {
            if let Some(s) = &self.sink {
                s(level, &line());
            }
        }
    }
}
