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
    match read_partial(options) {
        (Some(t), problems) if problems.is_empty() => Ok(t),
        (_, problems) => Err(problems),
    }
}

/// Every problem of `options` read as `T`: the keys at fault (see
/// [`read`]), then what `validate` finds in the rest, leaving out what it
/// says of a key already at fault (checked with its default in its place).
pub fn problems<T: DeserializeOwned>(options: &Value, validate: impl FnOnce(T) -> Vec<String>) -> Vec<String> {
    let (read, mut problems) = read_partial::<T>(options);
    let at_fault: Vec<String> =
        problems.iter().filter_map(|p| p.split_once(": ").map(|(path, _)| path.to_owned())).collect();
    let unread = |problem: &String| {
        let path = problem.split_once(": ").map_or(problem.as_str(), |(path, _)| path);
        at_fault.iter().any(|f| path == f || path.strip_prefix(f.as_str()).is_some_and(|r| r.starts_with(['.', '['])))
    };
    if let Some(read) = read {
        let more: Vec<String> = validate(read).into_iter().filter(|p| !unread(p)).collect();
        problems.extend(more);
    }
    problems
}

/// Like [`read`], but also gives `T` as read with the keys at fault set
/// aside (their defaults in their place), when that reads, so that the
/// meaning of the rest can be checked too.
pub fn read_partial<T: DeserializeOwned>(options: &Value) -> (Option<T>, Vec<String>) {
    let mut value = options.clone();
    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return (Some(t), problems),
            Err(e) => {
                let path = e.path().to_string();
                let message = redacted(&path, tidy(&e.inner().to_string()));
                // A key set aside reads as missing: already reported.
                let missing = message.strip_prefix("missing key `").and_then(|m| m.strip_suffix('`'));
                let here = |key: &str| if path == "." { key.to_owned() } else { format!("{path}.{key}") };
                if missing.is_some_and(|key| removed.contains(&here(key))) {
                    return (None, problems);
                }
                removed.push(path.clone());
                problems.push(if path == "." { message } else { format!("{path}: {message}") });
                let segments: Vec<&Segment> = e.path().iter().collect();
                if segments.is_empty() || !remove(&mut value, &segments) {
                    return (None, problems);
                }
            }
        }
    }
    (None, problems)
}

/// Whether a key holds a secret (a key, a token, a password), whose value
/// no message may show, not even a wrong one.
pub fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).split('[').next().unwrap_or(key);
    ["key", "secret", "token", "password"].iter().any(|s| last.ends_with(s))
}

/// `message` about the value at `path`, without the value when it is a
/// secret's.
fn redacted(path: &str, message: String) -> String {
    if !is_secret(path) {
        return message;
    }
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("invalid value (not shown: a secret), expected {expected}"),
        None => "invalid value (not shown: a secret)".to_owned(),
    }
}

/// Serde's messages in the one form every configuration problem takes:
/// `unknown key `x`; did you mean `y`?` (or the keys there are), `missing
/// key `x``, `invalid type: …, expected …`, `invalid value: …, expected …`,
/// with an example of the form expected for durations and addresses.
pub fn tidy(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        return unknown_key(field, &known);
    }
    if let Some(field) = message.strip_prefix("missing field `") {
        return format!("missing key `{}", field);
    }
    // The standard library's address parser says only this.
    let mut out = match message.strip_suffix("invalid socket address syntax") {
        Some(rest) => format!("{rest}expected a socket address"),
        None => message.to_owned(),
    };
    // Rust's names for numbers, in words.
    for (rust, words) in NUMBERS {
        if let Some(rest) = out.strip_suffix(rust) {
            out = format!("{rest}{words}");
            break;
        }
    }
    for (expected, example) in EXAMPLES {
        if out.ends_with(expected) {
            out.push_str(example);
            break;
        }
    }
    out
}

/// Rust's type names as serde writes them after "expected", in words.
const NUMBERS: &[(&str, &str)] = &[
    ("expected usize", "expected a whole number"),
    ("expected u64", "expected a whole number"),
    ("expected u32", "expected a whole number"),
    ("expected u16", "expected a whole number"),
    ("expected u8", "expected a whole number"),
    ("expected i64", "expected a whole number"),
    ("expected i32", "expected a whole number"),
    ("expected f64", "expected a number"),
    ("expected f32", "expected a number"),
];

/// How each expected form is written, after serde's word for it.
const EXAMPLES: &[(&str, &str)] = &[
    ("expected a duration", " such as \"30s\", \"5m\" or \"1h 30m\""),
    ("expected socket address", " such as \"127.0.0.1:50051\" or \"[::]:50051\""),
    ("expected a socket address", " such as \"127.0.0.1:50051\" or \"[::]:50051\""),
];

/// `unknown key `field``, with the nearest of the `known` keys when one is
/// near enough to be a typo, else the keys there are.
pub fn unknown_key(field: &str, known: &[&str]) -> String {
    // A key with a word more or less (`per_app_rps` for `per_app`) is near.
    // A key cut short with a typo (`helth` for `healthcare`) too.
    let near = |k: &str| {
        let n = field.chars().count();
        let start = |len: usize| k.chars().take(len).collect::<String>();
        if k.len() >= 3 && (field.starts_with(k) || k.starts_with(field)) {
            1
        } else if n >= 4 && (n - 1..=n + 1).any(|len| distance(field, &start(len)) <= 1) {
            2
        } else {
            distance(field, k)
        }
    };
    let nearest = known
        .iter()
        .map(|k| (near(k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d);
    match nearest {
        Some((_, k)) => format!("unknown key `{field}`; did you mean `{k}`?"),
        None if known.is_empty() => format!("unknown key `{field}`"),
        None => format!("unknown key `{field}`; the keys here are {}", known.join(", ")),
    }
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            previous = row[j + 1];
            row[j + 1] = here;
        }
    }
    row[b.len()]
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
    fn messages_take_one_form_with_the_nearest_key_and_the_form_expected() {
        assert_eq!(
            tidy("unknown field `drain_timout`, expected one of `listen`, `drain_timeout`"),
            "unknown key `drain_timout`; did you mean `drain_timeout`?"
        );
        assert_eq!(
            tidy("unknown field `colour`, expected `limit` or `name`"),
            "unknown key `colour`; the keys here are limit, name"
        );
        assert_eq!(tidy("missing field `kind`"), "missing key `kind`");
        assert_eq!(
            tidy("invalid value: string \"soon\", expected a duration"),
            "invalid value: string \"soon\", expected a duration such as \"30s\", \"5m\" or \"1h 30m\""
        );
        assert_eq!(distance("drain_timout", "drain_timeout"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn a_secrets_value_is_never_shown() {
        for secret in ["token_secret", "auth.client_secret", "page_token_key", "password", "refresh_token"] {
            assert!(is_secret(secret), "{secret}");
        }
        for plain in ["token_ttl", "api_key_sha256", "token_sha256", "keyed"] {
            assert!(!is_secret(plain), "{plain}");
        }
        let m = redacted("auth.client_secret", "invalid type: integer `1234`, expected a string".to_owned());
        assert_eq!(m, "invalid value (not shown: a secret), expected a string");
    }

    #[test]
    fn a_partial_read_keeps_what_is_good() {
        let options = serde_json::json!({"url": "https://x", "sets": {"one": {"limit": "ten", "name": "a"}}});
        let (read, problems) = read_partial::<Outer>(&options);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let read = read.unwrap();
        assert_eq!((read.url.as_str(), read.sets["one"].name.as_str()), ("https://x", "a"));
    }

    #[test]
    fn the_meaning_of_a_key_at_fault_is_not_checked_again() {
        let options = serde_json::json!({"url": 5, "sets": {"one": {"limit": 0}}});
        let problems = problems::<Outer>(&options, |o| {
            let mut p = vec!["url: must be an https URL".to_owned()];
            if o.sets.get("one").is_some_and(|s| s.limit == 0) {
                p.push("sets.one.limit: must be at least 1".to_owned());
            }
            p
        });
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("url: invalid type"), "{problems:?}");
        assert_eq!(problems[1], "sets.one.limit: must be at least 1");
    }

    #[test]
    fn good_options_are_read() {
        let options = serde_json::json!({"url": "https://x", "sets": {"one": {"limit": 5}}});
        let read = read::<Outer>(&options).unwrap();
        assert_eq!(read.sets["one"].limit, 5);
    }
}
