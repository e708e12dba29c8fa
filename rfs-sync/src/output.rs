//! What a run tells its caller: lines for people on stderr (or stdout for
//! `--show` and `--status`, whose output is the data asked for), and with
//! `--json` exactly one JSON object on stdout, on success and on failure.
//!
//! Every JSON object has `ok` and `action`; a failure adds `exit_code`,
//! `error` and `conflicts`. The fields of each report come from its
//! `Serialize` implementation.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::exit::{self, Code};

/// A result of one mode that can be shown to people and to programs.
pub(crate) trait Report: Serialize {
    /// The `action` named in JSON output.
    const ACTION: &'static str;

    /// Returns the lines for people.
    fn lines(&self) -> Vec<String>;

    /// Returns the exit code and message when the result is a failure that
    /// still carries a full report (an update with conflicts).
    fn failure(&self) -> Option<(Code, String)> {
        None
    }

    /// Returns whether the lines are the data asked for, printed on stdout.
    fn lines_are_data(&self) -> bool {
        false
    }
}

/// Prints `report` and returns the exit code it means.
pub(crate) fn emit<R: Report>(report: &R, json: bool) -> Code {
    let failure = report.failure();
    // With --json the data is in the JSON object; the lines would repeat it.
    let lines = match (report.lines_are_data(), json) {
        (true, true) => Vec::new(),
        _ => report.lines(),
    };
    for line in lines {
        if report.lines_are_data() {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if let Some((_, message)) = &failure {
        eprintln!("rfs-sync: {message}");
    }
    if json {
        println!("{}", report_json(report, failure.as_ref()));
    }
    failure.map_or(Code::Done, |(code, _)| code)
}

/// Prints a failed run and returns its exit code.
pub(crate) fn emit_error(action: &str, err: &anyhow::Error, json: bool) -> Code {
    let (code, conflicts) = exit::code_of(err);
    eprintln!("rfs-sync: {err:#}");
    if json {
        println!(
            "{}",
            error_json(action, code, &format!("{err:#}"), &conflicts)
        );
    }
    code
}

/// Returns the JSON object of a report.
pub(crate) fn report_json<R: Report>(report: &R, failure: Option<&(Code, String)>) -> Value {
    let mut object = Map::new();
    object.insert("ok".into(), Value::Bool(failure.is_none()));
    object.insert("action".into(), Value::from(R::ACTION));
    match serde_json::to_value(report) {
        Ok(Value::Object(fields)) => object.extend(fields),
        Ok(other) => {
            object.insert("result".into(), other);
        }
        Err(err) => {
            object.insert("error".into(), Value::from(err.to_string()));
        }
    }
    if let Some((code, message)) = failure {
        object.insert("exit_code".into(), Value::from(code.as_u8()));
        object.insert("error".into(), Value::from(message.as_str()));
        object
            .entry("conflicts")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    Value::Object(object)
}

/// Returns the JSON object of a failed run.
pub(crate) fn error_json(action: &str, code: Code, message: &str, conflicts: &[String]) -> Value {
    json!({
        "ok": false,
        "action": action,
        "exit_code": code.as_u8(),
        "error": message,
        "conflicts": conflicts,
    })
}

/// Returns `n` and the noun, in the plural unless `n` is one.
pub(crate) fn plural(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        version: u64,
        conflicts: Vec<String>,
    }

    impl Report for Sample {
        const ACTION: &'static str = "update";

        fn lines(&self) -> Vec<String> {
            Vec::new()
        }
    }

    #[test]
    fn a_success_has_ok_action_and_the_report_fields() {
        let sample = Sample {
            version: 3,
            conflicts: vec![],
        };

        let value = report_json(&sample, None);

        assert_eq!(
            value,
            json!({"ok": true, "action": "update", "version": 3, "conflicts": []})
        );
    }

    #[test]
    fn a_report_that_fails_adds_the_exit_code_and_error() {
        let sample = Sample {
            version: 3,
            conflicts: vec!["world".into()],
        };

        let value = report_json(&sample, Some(&(Code::Conflict, "1 conflict".into())));

        assert_eq!(value["ok"], json!(false));
        assert_eq!(value["exit_code"], json!(3));
        assert_eq!(value["conflicts"], json!(["world"]));
    }

    #[test]
    fn an_error_has_the_documented_shape() {
        let value = error_json("commit", Code::Conflict, "refused", &["world".into()]);

        assert_eq!(
            value,
            json!({"ok": false, "action": "commit", "exit_code": 3,
                   "error": "refused", "conflicts": ["world"]})
        );
    }
}
