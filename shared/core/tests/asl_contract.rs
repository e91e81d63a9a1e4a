//! The strings the state machine and the Rust steps exchange are checked here, from both sides:
//! the Choice values the ASL routes on are the serializations of [`Outcome`] and [`RunStatus`],
//! every outcome but the default one is routed, every `ErrorEquals` name is one the Lambdas
//! return (or an AWS one), and every Retry of spotfit's transient errors retries all of them.
//! Editing either side alone fails a test here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use spotfit_core::error_names;
use spotfit_core::pipeline::Outcome;
use spotfit_core::RunStatus;
use std::collections::BTreeSet;

const ASL: &str = include_str!("../../../statemachine/spotfit.asl.json");

fn asl() -> Value {
    serde_json::from_str(ASL).expect("statemachine/spotfit.asl.json is JSON")
}

/// Every variant, by an exhaustive match: a new variant is a compile error here until it is
/// listed, so the ASL check below cannot silently miss it.
fn all_outcomes() -> Vec<Outcome> {
    use Outcome::*;
    let all = vec![Succeeded, Retry, Failed, TimedOut, RetriesExhausted];
    for o in &all {
        match o {
            Succeeded | Retry | Failed | TimedOut | RetriesExhausted => {}
        }
    }
    all
}

fn all_statuses() -> Vec<RunStatus> {
    use RunStatus::*;
    let all = vec![
        Running,
        Succeeded,
        Failed,
        OomKilled,
        Interrupted,
        Lost,
        TimedOut,
        Cancelled,
    ];
    for s in &all {
        match s {
            Running | Succeeded | Failed | OomKilled | Interrupted | Lost | TimedOut | Cancelled => {}
        }
    }
    all
}

fn names<T: serde::Serialize>(all: &[T]) -> BTreeSet<String> {
    all.iter()
        .map(|v| serde_json::to_value(v).unwrap().as_str().unwrap().to_string())
        .collect()
}

/// Every state of the machine, nested Map/Parallel branches included.
fn states(v: &Value, out: &mut Vec<(String, Value)>) {
    if let Some(map) = v.get("States").and_then(Value::as_object) {
        for (name, st) in map {
            out.push((name.clone(), st.clone()));
            states(st, out);
            for key in ["Iterator", "ItemProcessor"] {
                if let Some(inner) = st.get(key) {
                    states(inner, out);
                }
            }
            for b in st.get("Branches").and_then(Value::as_array).into_iter().flatten() {
                states(b, out);
            }
        }
    }
}

/// (Variable, StringEquals) of every choice rule, through And/Or/Not.
fn rules(rule: &Value, out: &mut Vec<(String, String)>) {
    if let (Some(var), Some(eq)) = (
        rule.get("Variable").and_then(Value::as_str),
        rule.get("StringEquals").and_then(Value::as_str),
    ) {
        out.push((var.to_string(), eq.to_string()));
    }
    for key in ["And", "Or"] {
        for r in rule.get(key).and_then(Value::as_array).into_iter().flatten() {
            rules(r, out);
        }
    }
    if let Some(r) = rule.get("Not") {
        rules(r, out);
    }
}

fn all_states() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    states(&asl(), &mut out);
    assert!(!out.is_empty(), "no states found");
    out
}

#[test]
fn choice_values_are_the_rust_serializations_and_every_outcome_is_routed() {
    let outcomes = names(&all_outcomes());
    let statuses = names(&all_statuses());
    let mut routed = BTreeSet::new();
    let mut checked = 0;
    for (name, st) in all_states() {
        if st["Type"] != "Choice" {
            continue;
        }
        let mut found = Vec::new();
        for c in st["Choices"].as_array().unwrap() {
            rules(c, &mut found);
        }
        for (var, eq) in found {
            checked += 1;
            match var.as_str() {
                "$.outcome" => {
                    assert!(
                        outcomes.contains(&eq),
                        "{name}: $.outcome == {eq:?} is no Outcome ({outcomes:?})"
                    );
                    routed.insert(eq);
                }
                "$.check.status" => {
                    assert!(
                        statuses.contains(&eq),
                        "{name}: $.check.status == {eq:?} is no RunStatus ({statuses:?})"
                    )
                }
                other => panic!("{name}: a Choice on {other} that no Rust type declares"),
            }
        }
        if st["Choices"].to_string().contains("$.outcome") {
            assert!(
                st.get("Default").is_some(),
                "{name}: routing on $.outcome needs a Default"
            );
        }
    }
    assert!(
        checked >= 2,
        "expected the Ended? and Outcome choices, checked {checked} rules"
    );
    // Failed goes to the Default branch; every other outcome needs its own route.
    let unrouted: Vec<_> = outcomes
        .iter()
        .filter(|o| *o != "failed" && !routed.contains(*o))
        .collect();
    assert!(unrouted.is_empty(), "outcomes the ASL does not route: {unrouted:?}");
}

#[test]
fn every_error_name_is_one_the_lambdas_return_or_an_aws_one() {
    for (name, st) in all_states() {
        for block in ["Retry", "Catch"] {
            for entry in st.get(block).and_then(Value::as_array).into_iter().flatten() {
                for e in entry["ErrorEquals"].as_array().unwrap() {
                    let e = e.as_str().unwrap();
                    assert!(
                        e.starts_with("States.") || e.starts_with("Lambda.") || error_names::ALL.contains(&e),
                        "{name}.{block}: {e:?} is not in spotfit_core::error_names::ALL"
                    );
                }
            }
        }
    }
}

#[test]
fn every_task_retries_all_of_the_transient_errors() {
    let mut tasks = 0;
    for (name, st) in all_states() {
        if st["Type"] != "Task" {
            continue;
        }
        tasks += 1;
        let retried: BTreeSet<&str> = st
            .get("Retry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().filter_map(Value::as_str))
            .collect();
        let retries_all = retried.contains("States.ALL");
        for t in error_names::TRANSIENT {
            assert!(retries_all || retried.contains(t), "{name} does not retry {t}");
        }
    }
    assert!(tasks >= 5, "expected the pipeline's Task states, found {tasks}");
}
