//! Vocabularies and the mapping of list labels to class indices.
//!
//! * YouTube-8M `vocabulary.csv` (columns `Index,TrainVideoCount,KnowledgeGraphId,Name,...`): the
//!   `Index` column *is* the label index (the 2019 file keeps the sparse 2018 indices).
//! * `yt8m-2018`: the 3,862 class names of the 2018 release (index = line); the Knowledge-Graph
//!   ids of the 1,000 classes the 2019 file covers are attached (no public file has the others').
//! * Kinetics 400/600/700 and any one-name-per-line file: index = line number (the shipped
//!   Kinetics lists are in sorted order, so this is the usual "position in the sorted list").
//!
//! Labels map by Knowledge-Graph id (`/m/...`), then exact name, then a case- and
//! space-normalised name (reported as a warning so users can fix their lists).
use std::collections::HashMap;

/// Lookups happen once per list row (millions): a fast seeded hasher, not SipHash.
type Map = HashMap<String, usize, foldhash::fast::RandomState>;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("unknown label `{label}` (not in vocabulary {vocab}){hint}")]
    Unknown { label: String, vocab: String, hint: String },
    #[error("vocabulary {path}: {msg}")]
    BadVocab { path: String, msg: String },
    #[error("unknown built-in vocabulary `{0}` (yt8m, yt8m-2018, kinetics-400, kinetics-600, kinetics-700, or a file path)")]
    UnknownBuiltin(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    pub index: i64,
    pub name: String,
    pub kg_id: Option<String>,
}

/// How a label was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact,
    /// Matched only after case and space normalisation: worth a warning.
    Normalised,
}

#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// `yt8m`, `kinetics-400`, ... or the file path it came from.
    pub source: String,
    pub classes: Vec<Class>,
    by_name: Map,
    by_norm: Map,
    by_kg: Map,
    /// What was said about unknown labels (see `hint`).
    hints: std::sync::Arc<std::sync::Mutex<HashMap<String, String>>>,
}

/// The built-in vocabularies, loaded once, for hints about labels another one lacks.
fn builtins() -> &'static [Vocabulary] {
    static ALL: std::sync::OnceLock<Vec<Vocabulary>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| BUILTINS.iter().filter_map(|n| Vocabulary::load(n).ok()).collect())
}

/// The built-in vocabularies' names, with what each holds.
pub const BUILTINS: [&str; 5] = ["yt8m", "yt8m-2018", "kinetics-400", "kinetics-600", "kinetics-700"];

const YT8M: &str = include_str!("../vocab/vocabulary.csv");
const YT8M_2018: &str = include_str!("../vocab/yt8m_2018_label_map.txt");
const K400: &str = include_str!("../vocab/kinetics400_label_map.txt");
const K600: &str = include_str!("../vocab/kinetics600_label_map.txt");
const K700: &str = include_str!("../vocab/kinetics700_label_map.txt");

fn normalise(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '_')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Vocabulary {
    pub fn from_classes(source: &str, classes: Vec<Class>) -> Result<Self, LabelError> {
        let mut v = Vocabulary {
            source: source.to_string(),
            classes: vec![],
            by_name: Map::default(),
            by_norm: Map::default(),
            by_kg: Map::default(),
            hints: Default::default(),
        };
        for c in classes {
            let i = v.classes.len();
            // The 2019 YouTube-8M file has 12 classes with a KG id and no name; the 2018 name
            // list has 56 named `???`. Such classes are reachable by KG id only.
            if !c.name.is_empty() && c.name != "???" {
                if v.by_name.insert(c.name.clone(), i).is_some() {
                    return Err(LabelError::BadVocab { path: source.into(), msg: format!("duplicate class name `{}`", c.name) });
                }
                v.by_norm.entry(normalise(&c.name)).or_insert(i);
            }
            if let Some(kg) = &c.kg_id {
                v.by_kg.insert(kg.clone(), i);
            }
            v.classes.push(c);
        }
        Ok(v)
    }

    /// `yt8m`, `kinetics-400`, `kinetics-600`, `kinetics-700`, or a path to a vocabulary file.
    pub fn load(spec: &str) -> Result<Self, LabelError> {
        match spec {
            "yt8m" | "youtube-8m" => Self::parse_yt8m_csv("yt8m", YT8M),
            "yt8m-2018" | "youtube-8m-2018" => {
                // The 2019 file's indices are 2018 indices: its KG ids belong to those classes.
                let mut v = Self::parse_lines("yt8m-2018", YT8M_2018)?;
                let mut classes = std::mem::take(&mut v.classes);
                for c in Self::parse_yt8m_csv("yt8m", YT8M)?.classes {
                    if let Some(k) = classes.get_mut(c.index as usize) {
                        k.kg_id = c.kg_id;
                    }
                }
                Self::from_classes("yt8m-2018", classes)
            }
            "kinetics-400" | "kinetics400" => Self::parse_lines("kinetics-400", K400),
            "kinetics-600" | "kinetics600" => Self::parse_lines("kinetics-600", K600),
            "kinetics-700" | "kinetics700" | "kinetics-700-2020" => Self::parse_lines("kinetics-700", K700),
            path if Path::new(path).exists() => {
                let text = std::fs::read_to_string(path)?;
                let first = text.lines().next().unwrap_or("");
                if first.starts_with("Index,") || first.contains("KnowledgeGraphId") {
                    Self::parse_yt8m_csv(path, &text)
                } else {
                    Self::parse_lines(path, &text)
                }
            }
            other => Err(LabelError::UnknownBuiltin(other.to_string())),
        }
    }

    /// One class name per line; index = line number (blank lines are an error).
    pub fn parse_lines(source: &str, text: &str) -> Result<Self, LabelError> {
        let classes = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let name = l.trim();
                if name.is_empty() {
                    Err(LabelError::BadVocab { path: source.into(), msg: format!("line {} is empty", i + 1) })
                } else {
                    Ok(Class { index: i as i64, name: name.to_string(), kg_id: None })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_classes(source, classes)
    }

    /// YouTube-8M `vocabulary.csv`: `Index` and `Name` required, `KnowledgeGraphId` optional.
    pub fn parse_yt8m_csv(source: &str, text: &str) -> Result<Self, LabelError> {
        let bad = |msg: String| LabelError::BadVocab { path: source.into(), msg };
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (ci, cn) = (col("Index").ok_or_else(|| bad("no Index column".into()))?, col("Name").ok_or_else(|| bad("no Name column".into()))?);
        let ck = col("KnowledgeGraphId");
        let mut classes = vec![];
        for (row, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            let index = rec.get(ci).unwrap_or("").trim().parse::<i64>().map_err(|_| bad(format!("row {}: Index is not an integer", row + 2)))?;
            let name = rec.get(cn).unwrap_or("").trim().to_string();
            let kg_id = ck.and_then(|c| rec.get(c)).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            classes.push(Class { index, name, kg_id });
        }
        Self::from_classes(source, classes)
    }

    /// Maps a list label (KG id or name) to its class.
    pub fn lookup(&self, label: &str) -> Result<(&Class, Match), LabelError> {
        let label = label.trim();
        if let Some(&i) = self.by_kg.get(label).or_else(|| self.by_name.get(label)) {
            return Ok((&self.classes[i], Match::Exact));
        }
        if let Some(&i) = self.by_norm.get(&normalise(label)) {
            return Ok((&self.classes[i], Match::Normalised));
        }
        Err(LabelError::Unknown { label: label.to_string(), vocab: self.source.clone(), hint: self.hint(label) })
    }

    /// What to say about a label this vocabulary lacks: the nearest names here, and the other
    /// built-in vocabularies that have it. Worked out for the first 100 distinct labels (a list
    /// full of unknown labels must not cost a search per row), then remembered.
    fn hint(&self, label: &str) -> String {
        let mut cache = self.hints.lock().unwrap();
        if let Some(h) = cache.get(label) {
            return h.clone();
        }
        if cache.len() >= 100 {
            return String::new();
        }
        let norm = normalise(label);
        let mut near: Vec<(f64, &str)> = self
            .classes
            .iter()
            .filter(|c| !c.name.is_empty() && c.name != "???")
            .map(|c| (strsim::normalized_damerau_levenshtein(&norm, &normalise(&c.name)), c.name.as_str()))
            .filter(|(s, _)| *s >= 0.6)
            .collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let mut parts = vec![];
        if !near.is_empty() {
            parts.push(format!("nearest here: {}", near.iter().take(3).map(|(_, n)| format!("`{n}`")).collect::<Vec<_>>().join(", ")));
        }
        for other in builtins().iter().filter(|v| v.source != self.source) {
            if let Some(&i) = other.by_kg.get(label).or_else(|| other.by_name.get(label)).or_else(|| other.by_norm.get(&norm)) {
                parts.push(format!("it is class {} of {} (--vocab {})", other.classes[i].index, other.source, other.source));
            }
        }
        if self.source == "yt8m-2018" && label.starts_with("/m/") {
            parts.push("yt8m-2018 knows Knowledge-Graph ids only for the 1,000 classes of the 2019 list: give the name".into());
        }
        let h = if parts.is_empty() { String::new() } else { format!("; {}", parts.join("; ")) };
        cache.insert(label.to_string(), h.clone());
        h
    }

    /// `Index,KnowledgeGraphId,Name` lines (with the header), so readers can map indices
    /// back to names; the caller writes them (atomically) as `vocabulary.csv`.
    pub fn csv(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 * self.classes.len() + 32);
        let _ = writeln!(f, "Index,KnowledgeGraphId,Name");
        for c in &self.classes {
            let q = |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
            let _ = writeln!(f, "{},{},{}", c.index, q(c.kg_id.as_deref().unwrap_or("")), q(&c.name));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yt8m_indices_are_the_index_column_not_row_numbers() {
        let v = Vocabulary::load("yt8m").unwrap();
        assert_eq!(v.classes.len(), 1000);
        let (c, m) = v.lookup("Car").unwrap();
        assert_eq!((c.index, m), (7, Match::Exact));
        assert_eq!(v.lookup("/m/0k4j").unwrap().0.index, 7);
        assert_eq!(v.lookup("/m/01jddz").unwrap().0.name, "Concert");
        // Nameless classes are reachable by KG id only.
        assert_eq!(v.lookup("/m/0dxrf").unwrap().0.index, 120);
        assert!(v.lookup("").is_err());
    }

    #[test]
    fn the_2018_name_list_agrees_with_the_2019_sparse_indices() {
        let v18 = Vocabulary::load("yt8m-2018").unwrap();
        assert_eq!(v18.classes.len(), 3862);
        let v19 = Vocabulary::load("yt8m").unwrap();
        let mut checked = 0;
        for c in v19.classes.iter().filter(|c| !c.name.is_empty()) {
            assert_eq!(v18.lookup(&c.name).unwrap().0.index, c.index, "{}", c.name);
            checked += 1;
        }
        assert_eq!(checked, 988);
        assert!(v18.lookup("???").is_err(), "unnamed classes are not matched by name");
        // The 2019 list's Knowledge-Graph ids reach the same 2018 classes.
        for c in v19.classes.iter() {
            assert_eq!(v18.lookup(c.kg_id.as_deref().unwrap()).unwrap().0.index, c.index);
        }
    }

    #[test]
    fn an_unknown_label_names_the_vocabulary_the_nearest_names_and_where_it_is() {
        let v19 = Vocabulary::load("yt8m").unwrap();
        let e = v19.lookup("Bird").unwrap_err().to_string();
        assert!(e.contains("vocabulary yt8m") && e.contains("it is class") && e.contains("of yt8m-2018 (--vocab yt8m-2018)"), "{e}");
        let k = Vocabulary::load("kinetics-400").unwrap();
        let e = k.lookup("arm wrestlng").unwrap_err().to_string();
        assert!(e.contains("nearest here: `arm wrestling`"), "{e}");
        let e = k.lookup("Cooking").unwrap_err().to_string();
        assert!(e.contains("of yt8m (--vocab yt8m)"), "{e}");
        let v18 = Vocabulary::load("yt8m-2018").unwrap();
        let e = v18.lookup("/m/notakgid").unwrap_err().to_string();
        assert!(e.contains("Knowledge-Graph ids only for the 1,000"), "{e}");
    }

    #[test]
    fn kinetics_and_normalised_names() {
        let v = Vocabulary::load("kinetics-400").unwrap();
        assert_eq!(v.classes.len(), 400);
        assert_eq!(v.lookup("abseiling").unwrap().0.index, 0);
        assert_eq!(v.lookup("arm wrestling").unwrap(), (&v.classes[6], Match::Exact));
        assert_eq!(v.lookup("Arm_Wrestling").unwrap().1, Match::Normalised);
        assert!(matches!(v.lookup("juggling chainsaws at dawn"), Err(LabelError::Unknown { .. })));
        assert_eq!(Vocabulary::load("kinetics-600").unwrap().classes.len(), 600);
        assert_eq!(Vocabulary::load("kinetics-700").unwrap().classes.len(), 700);
    }

    #[test]
    fn written_vocabulary_reads_back() {
        let dir = std::env::temp_dir().join(format!("vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vocabulary.csv");
        let v = Vocabulary::load("yt8m").unwrap();
        std::fs::write(&p, v.csv()).unwrap();
        let back = Vocabulary::load(p.to_str().unwrap()).unwrap();
        assert_eq!(back.classes, v.classes);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
