//! Readers of finished outputs: `vidfeat inspect` (records as JSON), `verify` (CRCs, schema,
//! counts), `report` (one HTML page) and `sample` (a stratified sample for trainers). They read
//! output folders and shards; they write nothing into them.
pub mod inspect;
pub mod report;
pub mod sample;
pub mod verify;
