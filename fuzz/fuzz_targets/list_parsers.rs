//! Any bytes as a CSV, TSV, JSONL or TXT list (the first byte picks the format; a Kinetics
//! header is as reachable as ours): ingestion must return rows or row errors, never panic, and
//! every task it lets through must be safe to build paths and lines from: a valid split name,
//! an id without control characters, no NUL in a source. CSV/TSV rows also go through the
//! line splitter on their own (RFC 4180 within a line; an open quote is an error, not a hang).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let ext = ["csv", "tsv", "jsonl", "txt"][kind as usize % 4];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("list.{ext}"));
    std::fs::write(&p, body).unwrap();
    // Half the inputs with a listed Kinetics root holding one clip, so rows resolve.
    if kind & 8 != 0 {
        std::fs::write(dir.path().join("a.mp4"), b"").unwrap();
    }
    let opts = vidfeat_ingest::Options { default_split: "train".into(), ids_as_sources: kind & 4 != 0, ..Default::default() };
    if let Ok(got) = vidfeat_ingest::read_inputs(&[p], &opts) {
        for e in &got.errors {
            let _ = e.to_string();
            assert!(matches!(e.kind, "invalid_row" | "duplicate_id" | "not_found"), "{}", e.kind);
        }
        for t in &got.tasks {
            assert!(!t.id.is_empty() || matches!(t.source, vidfeat_ingest::Source::Id(_)));
            assert!(vidfeat_ingest::check_split(&t.split).is_ok(), "split {:?}", t.split);
            assert!(!t.split.contains(['/', '\\']) && !t.split.starts_with('.'));
            assert!(!t.id.chars().any(char::is_control), "id {:?}", t.id);
            assert!(!t.source.to_string().contains('\0'));
            assert!(t.window.is_none_or(|(s, e)| s.is_finite() && s >= 0.0 && e > s));
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        for line in text.lines() {
            if let Ok(fields) = vidfeat_ingest::split_fields(line, if kind & 1 == 0 { ',' } else { '\t' }) {
                assert!(!fields.is_empty());
            }
        }
    }
});
