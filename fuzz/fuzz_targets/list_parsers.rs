//! Any bytes as a CSV, TSV, JSONL or TXT list (the first byte picks the format; a Kinetics
//! header is as reachable as ours): ingestion must return rows or row errors, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let ext = ["csv", "tsv", "jsonl", "txt"][kind as usize % 4];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("list.{ext}"));
    std::fs::write(&p, body).unwrap();
    let opts = vidfeat_ingest::Options { default_split: "train".into(), ids_as_sources: kind & 4 != 0, ..Default::default() };
    if let Ok(got) = vidfeat_ingest::read_inputs(&[p], &opts) {
        for e in &got.errors {
            let _ = e.to_string();
        }
        for t in &got.tasks {
            assert!(!t.id.is_empty() || matches!(t.source, vidfeat_ingest::Source::Id(_)));
        }
    }
});
