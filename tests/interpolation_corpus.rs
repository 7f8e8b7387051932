//! Runs every case of the shared interpolation corpus (transcribed from compose-go's tests) through
//! `gitmoor::spec::interpolate`.
//!
//! The corpus is read from `$GITMOOR_CORPUS` or `<crate>/../shared/corpus/interpolation.tsv`; when
//! neither exists the test says so and passes.

use gitmoor::spec::interpolate::interpolate;
use std::collections::HashMap;
use std::path::PathBuf;

/// The corpus as transcribed holds 102 cases; fewer means it was cut short.
const EXPECTED_CASES: usize = 102;

struct Case {
    id: String,
    input: String,
    env: HashMap<String, String>,
    expect_error: bool,
    expected: String,
    validate_exit: u8,
}

fn corpus_path() -> PathBuf {
    match std::env::var_os("GITMOOR_CORPUS") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("shared")
            .join("corpus")
            .join("interpolation.tsv"),
    }
}

fn parse_env(field: &str) -> Result<HashMap<String, String>, String> {
    let mut env = HashMap::new();
    if field == "-" || field.is_empty() {
        return Ok(env);
    }
    for pair in field.split(' ').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("env entry {pair:?} has no `=`"))?;
        env.insert(name.to_string(), value.to_string());
    }
    Ok(env)
}

fn parse(text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let at = |what: String| format!("line {}: {what}", index + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 6 {
            return Err(at(format!("{} fields, want at least 6", fields.len())));
        }
        let expect_error = match fields[3] {
            "value" => false,
            "error" => true,
            other => return Err(at(format!("outcome {other:?}, want value|error"))),
        };
        let validate_exit = match fields[5] {
            "0" => 0,
            "1" => 1,
            other => return Err(at(format!("validate_exit {other:?}, want 0|1"))),
        };
        cases.push(Case {
            id: fields[0].to_string(),
            input: fields[1].to_string(),
            env: parse_env(fields[2]).map_err(at)?,
            expect_error,
            expected: fields[4].to_string(),
            validate_exit,
        });
    }
    Ok(cases)
}

/// `None` when the case passes, else what went wrong.
fn check(case: &Case) -> Option<String> {
    let lookup = |name: &str| case.env.get(name).cloned();
    let result = interpolate(&case.input, &lookup);
    let validate_exit = match &result {
        Err(_) => 1,
        Ok(done) if !done.missing.is_empty() => 1,
        Ok(_) => 0,
    };
    let mut problems = Vec::new();
    match (&result, case.expect_error) {
        (Ok(done), false) if done.value != case.expected => {
            problems.push(format!("value {:?}, want {:?}", done.value, case.expected))
        }
        (Ok(done), true) => problems.push(format!(
            "value {:?}, want an error like {:?}",
            done.value, case.expected
        )),
        (Err(e), false) => {
            problems.push(format!("error {:?}, want value {:?}", e.0, case.expected))
        }
        _ => {}
    }
    if validate_exit != case.validate_exit {
        problems.push(format!(
            "validate_exit {validate_exit} (missing {:?}), want {}",
            result
                .as_ref()
                .map(|d| d.missing.clone())
                .unwrap_or_default(),
            case.validate_exit
        ));
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{} input {:?}: {}",
            case.id,
            case.input,
            problems.join("; ")
        ))
    }
}

#[test]
fn interpolation_corpus() {
    let path = corpus_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "SKIP interpolation_corpus: no corpus at {} (set GITMOOR_CORPUS to run it)",
                path.display()
            );
            return;
        }
        Err(e) => panic!("cannot read the corpus {}: {e}", path.display()),
    };
    let cases = match parse(&text) {
        Ok(cases) => cases,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    assert!(
        cases.len() >= EXPECTED_CASES,
        "{} holds {} cases, want at least {EXPECTED_CASES}",
        path.display(),
        cases.len()
    );
    let failures: Vec<String> = cases.iter().filter_map(check).collect();
    println!(
        "interpolation corpus: {}/{} passing ({})",
        cases.len() - failures.len(),
        cases.len(),
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
