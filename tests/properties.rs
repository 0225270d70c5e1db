//! Property tests for the plan loader and template quoting.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use runner::plan::template::{Insert, Template};
use runner::plan::{Inputs, load_str};

use crate::common::repo;

fn load(text: &str) -> Result<runner::plan::Loaded, runner::plan::Diagnostics> {
    let inputs = Inputs {
        vars: &[],
        env: &|_| None,
        kinds: runner::KINDS,
    };
    load_str(
        Path::new("plan.toml"),
        PathBuf::from("/srv/app"),
        text.to_owned(),
        &inputs,
    )
}

/// A random DAG: step i needs up to 3 of the steps before it, declared in a
/// shuffled order so declaration order says nothing about execution order.
fn dag() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<usize>)> {
    (1usize..40).prop_flat_map(|n| {
        let needs = (0..n)
            .map(|i| {
                if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::btree_set(0..i, 0..=3.min(i))
                        .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                        .boxed()
                }
            })
            .collect::<Vec<_>>();
        (needs, Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    })
}

fn render((needs, declared): &(Vec<Vec<usize>>, Vec<usize>)) -> String {
    let mut text = String::from("[plan]\nname = \"random\"\n\n");
    for &i in declared {
        let list: Vec<String> = needs[i].iter().map(|n| format!("\"s{n}\"")).collect();
        let _ = write!(
            text,
            "[steps.s{i}]\nkind = \"shell\"\nneeds = [{}]\nrun = \"echo {i}\"\n\n",
            list.join(", ")
        );
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_validate_and_the_order_respects_every_need(plan in dag()) {
        let loaded = load(&render(&plan)).map_err(|d| TestCaseError::fail(d.render(false)))?;
        let p = &loaded.plan;
        prop_assert_eq!(p.dag.order.len(), plan.0.len());
        let mut position = vec![0; p.steps.len()];
        for (k, &s) in p.dag.order.iter().enumerate() {
            position[s] = k;
        }
        for (s, step) in p.steps.iter().enumerate() {
            let expected: Vec<String> = plan.0[step.id[1..].parse::<usize>().unwrap()].iter().map(|n| format!("s{n}")).collect();
            let got: Vec<String> = step.needs.iter().map(|&n| p.steps[n].id.clone()).collect();
            prop_assert_eq!(got, expected);
            for &need in &step.needs {
                prop_assert!(position[need] < position[s], "{} runs before its need {}", step.id, p.steps[need].id);
                prop_assert!(p.dag.wave[need] < p.dag.wave[s]);
            }
        }
    }

    #[test]
    fn mutated_plans_never_panic_the_loader(
        edits in proptest::collection::vec((0usize..100_000, 0usize..40, "[\\[\\]{}=\"'\\n#., a-z0-9{}-]{0,12}"), 1..6)
    ) {
        let mut text = std::fs::read_to_string(repo().join("plans/production.toml")).unwrap();
        for (at, remove, insert) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) { at -= 1; }
            let mut end = (at + remove).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(at..end, &insert);
        }
        // Valid or not, it must answer with a plan or diagnostics, never a panic;
        // every label must lie inside the text.
        if let Err(diagnostics) = load(&text) {
            prop_assert!(diagnostics.has_errors());
            for d in &diagnostics.items {
                for (span, _) in &d.labels {
                    prop_assert!(span.start <= span.end && span.end <= text.len(), "{:?} in {}", span, text.len());
                }
            }
            let _ = diagnostics.render(false);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever a variable holds, a real `sh` gets it as data, exactly, wherever the
    /// plan puts it: bare, in single or double quotes, in `$( )` or backticks, in a
    /// here-document quoted or not, after a comment with an apostrophe. The script
    /// never holds the value: it refers to the variable that carries it.
    #[test]
    fn no_value_escapes_whatever_surrounds_it(value in "[^\\x00]{0,24}") {
        let template = Template::parse(
            "# don't {{ v }}\n\
             printf '%s|' {{ v }} 'a{{ v }}b' \"c{{ v }}d\" e{{ v }}f \"$(printf '%s' {{ v }})\" \"`printf '%s' {{ v }}`\"\n\
             cat <<EOF\nh{{ v }}\nEOF\n\
             cat <<'EOF'\nq{{ v }}$HOME\\`x`\nEOF\n",
            None,
            &(0..0),
        );
        let script = template.script(&|_| Insert::Env("RUNNER_VAR_v"));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("RUNNER_VAR_v", &value)
            .env("HOME", "/home")
            .output()
            .unwrap();
        // Command substitution drops trailing newlines, as for any value.
        let substituted = value.trim_end_matches('\n');
        let expected = format!(
            "{value}|a{value}b|c{value}d|e{value}f|{substituted}|{substituted}|h{value}\nq{value}$HOME\\`x`\n"
        );
        prop_assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "script: {}", script);
    }
}
