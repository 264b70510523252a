//! Reading an adapter instance's options, with every key at fault named by
//! its path (`datasets.schools.paging.max_limit: invalid type: …`), not one
//! error for the whole table.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// The most problems reported for one instance.
const MAX_PROBLEMS: usize = 32;

/// `options` read as `T`, or every problem found, each as `path: message`
/// (the path relative to the instance's table). After a problem the key at
/// fault is set aside and reading goes on, so one mistake hides no other.
pub fn read<T: DeserializeOwned>(options: &Value) -> Result<T, Vec<String>> {
    let mut value = options.clone();
    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) if problems.is_empty() => return Ok(t),
            Ok(_) => return Err(problems),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.inner().to_string();
                // A key set aside reads as missing: already reported.
                let missing = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`'));
                let here = |key: &str| if path == "." { key.to_owned() } else { format!("{path}.{key}") };
                if missing.is_some_and(|key| removed.contains(&here(key))) {
                    return Err(problems);
                }
                removed.push(path.clone());
                problems.push(if path == "." { message } else { format!("{path}: {message}") });
                let segments: Vec<&Segment> = e.path().iter().collect();
                if segments.is_empty() || !remove(&mut value, &segments) {
                    return Err(problems);
                }
            }
        }
    }
    Err(problems)
}

/// Removes the value at `path`; whether there was one.
fn remove(value: &mut Value, path: &[&Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match (last, at) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        limit: u32,
        #[serde(default)]
        name: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        url: String,
        #[serde(default)]
        sets: BTreeMap<String, Inner>,
    }

    #[test]
    fn every_key_at_fault_is_named_by_its_path() {
        let options = serde_json::json!({
            "url": {"a": 1},
            "sets": {"one": {"limit": "ten", "name": 3}, "two": {"limit": 5, "colour": "red"}},
        });
        let problems = read::<Outer>(&options).unwrap_err();
        let joined = problems.join("\n");
        for path in
            ["url: invalid type: map", "sets.one.limit: invalid type: string", "sets.one.name: invalid type", "colour"]
        {
            assert!(joined.contains(path), "{path}:\n{joined}");
        }
        assert!(problems.len() >= 4, "{joined}");
    }

    #[test]
    fn good_options_are_read() {
        let options = serde_json::json!({"url": "https://x", "sets": {"one": {"limit": 5}}});
        let read = read::<Outer>(&options).unwrap();
        assert_eq!(read.sets["one"].limit, 5);
    }
}
