//! `runner graph`: the step graph as Graphviz DOT or Mermaid.

use std::fmt::Write as _;

use crate::plan::Plan;
use crate::plan::model::When;

/// Escapes text for a double-quoted DOT or Mermaid label.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn caption(plan: &Plan, s: usize) -> String {
    let step = &plan.steps[s];
    match step.when {
        When::Success => format!("{}\\n{}", step.id, step.action.name()),
        when => format!(
            "{}\\n{} (when {})",
            step.id,
            step.action.name(),
            when.as_str()
        ),
    }
}

pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", label(&plan.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    for &s in &plan.dag.order {
        let step = &plan.steps[s];
        let style = if step.when == When::Success {
            ""
        } else {
            ", style=dashed"
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\"{style}];",
            label(&step.id),
            label(&caption(plan, s)).replace("\\\\n", "\\n")
        );
    }
    for &s in &plan.dag.order {
        for &need in &plan.steps[s].needs {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                label(&plan.steps[need].id),
                label(&plan.steps[s].id)
            );
        }
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(plan: &Plan) -> String {
    // Step ids may hold `-`, which Mermaid reads as an edge: nodes are s0, s1, …
    let mut out = String::from("flowchart LR\n");
    for &s in &plan.dag.order {
        let text = caption(plan, s).replace("\\n", "<br/>");
        let _ = writeln!(out, "  s{s}[\"{}\"]", text.replace('"', "#quot;"));
    }
    for &s in &plan.dag.order {
        for &need in &plan.steps[s].needs {
            let _ = writeln!(out, "  s{need} --> s{s}");
        }
    }
    out
}
