//! The validator's log: text for people, or one JSON object per line for
//! machines. `RUST_LOG` sets levels per module.
//!
//! A JSON line is
//! `{"timestamp":…,"level":"INFO","target":"neuroshard_node::…","span":"…","fields":{"message":…,…}}`:
//! `fields` holds the event's own fields **and** those of every span it
//! happened in (the innermost value wins, the event's over any span's), so
//! a field such as `peer` or `nep` is always at `fields.<name>` whether the
//! line or its request handler's span carried it. `span` (the innermost
//! span's name) is present only inside a span.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Levels when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,openraft=warn,sled=warn,h2=warn,tower=warn";

/// The `RUST_LOG` filter, else [`DEFAULT_FILTER`].
pub fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
}

/// Logs to stderr, as text or as one JSON object per line.
pub fn init(json: bool) {
    if json {
        tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_env_filter(env_filter())
            .with_writer(std::io::stderr)
            .init();
        return;
    }
    // Colours only on a terminal: log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// One JSON object per event, the fields of its spans merged into
/// `fields` (module documentation). Spans' fields must be recorded by
/// [`JsonFields`].
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                if let Some(recorded) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(recorded) {
                        fields.extend(m);
                    }
                }
            }
        }
        event.record(&mut Fields(&mut fields));
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(meta.level().as_str().into()));
        line.insert("target".into(), Value::String(meta.target().into()));
        if let Some(name) = innermost {
            line.insert("span".into(), Value::String(name.into()));
        }
        line.insert("fields".into(), Value::Object(fields));
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields as JSON values (numbers stay numbers).
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().into(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    #[test]
    fn one_object_per_event_with_span_fields_merged() {
        let lines = lines_of(|| {
            tracing::info!(nep = 7u64, index = 42u64, term = 3u64, "certificate issued");
            let span = tracing::info_span!("peer_rpc", rpc = "append_entries", peer = 2u64);
            let _g = span.enter();
            tracing::warn!(index = 9u64, rule = "tick_ahead", "refused\nwith a newline");
            let inner = tracing::info_span!("inner", peer = 3u64);
            let _h = inner.enter();
            tracing::debug!(ok = true, "inside");
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        let f = &lines[0]["fields"];
        assert_eq!(f["nep"], 7);
        assert_eq!(f["index"], 42);
        assert_eq!(f["term"], 3);
        assert_eq!(f["message"], "certificate issued");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], module_path!());
        assert!(lines[0]["timestamp"].as_str().unwrap().len() >= 20);
        assert!(lines[0].get("span").is_none());
        let f = &lines[1]["fields"];
        assert_eq!(lines[1]["span"], "peer_rpc");
        assert_eq!(f["peer"], 2, "a span's field");
        assert_eq!(f["rpc"], "append_entries");
        assert_eq!(f["index"], 9);
        assert_eq!(f["message"], "refused\nwith a newline");
        assert_eq!(lines[2]["span"], "inner");
        assert_eq!(lines[2]["fields"]["peer"], 3, "the innermost span wins");
        assert_eq!(lines[2]["fields"]["ok"], true);
    }

    #[test]
    fn a_limited_call_site_carries_suppressed() {
        let lines = lines_of(|| {
            for _ in 0..1000 {
                neuroshard_node::limited!(
                    neuroshard_node::logging::RETRIES,
                    warn!(peer = 1u64, "unreachable")
                );
            }
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["fields"]["suppressed"], 0);
        assert_eq!(lines[0]["fields"]["peer"], 1);
    }
}
