//! The JSON-lines reader: bounded lines, a header first, precise errors.

use neuroshard_chaos::history::{
    Event, Header, Heal, History, HistoryError, HistoryReader, Recorder, HISTORY_FORMAT,
    MAX_LINE_BYTES,
};
use neuroshard_governance::testkit::{genesis, TestConfig};

fn header() -> Header {
    let (g, _) = genesis(&TestConfig::default());
    Header {
        format: HISTORY_FORMAT,
        harness: "format-test".to_owned(),
        seed: Some(1),
        chain_id: g.chain_id.clone(),
        committee: g.committee.info.clone(),
        replicas: 4,
        liveness_bound_ms: 1_000,
        started_ms: 0,
    }
}

fn heal(time_ms: u64) -> Event {
    Event::Heal(Heal {
        time_ms,
        id: 1,
        detail: String::new(),
    })
}

fn recorded(events: &[Event]) -> Vec<u8> {
    let mut r = Recorder::new(Vec::new(), &header()).expect("header encodes");
    for e in events {
        r.record(e).expect("event encodes");
    }
    r.finish().expect("flushes").0
}

#[test]
fn recorder_output_reads_back_with_blank_lines_ignored() {
    let mut bytes = recorded(&[heal(1), heal(2)]);
    bytes.extend_from_slice(b"\n  \n");
    let h = History::read(bytes.as_slice()).expect("reads");
    assert_eq!(h.header, header());
    assert_eq!(h.events, vec![heal(1), heal(2)]);
}

#[test]
fn the_digest_covers_every_byte_written() {
    let mut r = Recorder::new(Vec::new(), &header()).expect("header encodes");
    r.record(&heal(1)).expect("encodes");
    let (bytes, digest) = r.finish().expect("flushes");
    use sha2::Digest;
    let expected: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    assert_eq!(digest, expected);
}

#[test]
fn an_overlong_line_is_refused_with_its_line_number() {
    let mut bytes = recorded(&[heal(1)]);
    bytes.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    bytes.push(b'\n');
    match History::read(bytes.as_slice()) {
        Err(HistoryError::LineTooLong { line: 3, max }) => assert_eq!(max, MAX_LINE_BYTES),
        other => panic!("expected LineTooLong at line 3, got {other:?}"),
    }
}

#[test]
fn a_malformed_line_names_its_line_and_stops_the_stream() {
    let mut bytes = recorded(&[heal(1)]);
    bytes.extend_from_slice(b"{\"type\":\"heal\",\"time_ms\":\"soon\"}\n");
    bytes.extend_from_slice(&recorded(&[])[..]);
    let mut reader = HistoryReader::new(bytes.as_slice());
    assert!(matches!(reader.next(), Some(Ok(Event::Header(_)))));
    assert!(matches!(reader.next(), Some(Ok(Event::Heal(_)))));
    assert!(matches!(
        reader.next(),
        Some(Err(HistoryError::Json { line: 3, .. }))
    ));
    assert!(reader.next().is_none());
}

#[test]
fn the_header_must_come_first_and_only_once() {
    let line = serde_json::to_vec(&heal(1)).expect("encodes");
    assert!(matches!(
        History::read(line.as_slice()),
        Err(HistoryError::HeaderNotFirst { line: 1, .. })
    ));
    let mut twice = recorded(&[]);
    twice.extend_from_slice(&recorded(&[]));
    assert!(matches!(
        History::read(twice.as_slice()),
        Err(HistoryError::SecondHeader { line: 2 })
    ));
    assert!(matches!(History::read(&b""[..]), Err(HistoryError::Empty)));
}

#[test]
fn another_format_version_is_refused() {
    let mut h = header();
    h.format = HISTORY_FORMAT + 1;
    let bytes = serde_json::to_vec(&Event::Header(h)).expect("encodes");
    assert!(matches!(
        History::read(bytes.as_slice()),
        Err(HistoryError::UnsupportedFormat { .. })
    ));
}
