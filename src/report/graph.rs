//! `runner graph`: the step graph as Graphviz DOT or Mermaid. A plan with
//! `[hosts]` is drawn as its per-host instances (`restart-app@web1`), grouped
//! by batch.

use std::fmt::Write as _;

use crate::plan::Plan;
use crate::plan::model::When;
use crate::plan::rollout::instance_id;

/// Escapes text for a double-quoted DOT or Mermaid label.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What is drawn: one node per step, or per instance of a plan with hosts.
struct Drawing {
    /// Id, caption (lines), whether it runs after the plan, its batch.
    nodes: Vec<(String, Vec<String>, bool, Option<usize>)>,
    /// Nodes in order.
    order: Vec<usize>,
    needs: Vec<Vec<usize>>,
    batches: usize,
}

fn caption(plan: &Plan, s: usize) -> Vec<String> {
    let step = &plan.steps[s];
    match step.when {
        When::Success => vec![step.id.clone(), step.action.name().to_owned()],
        when => vec![
            step.id.clone(),
            format!("{} (when {})", step.action.name(), when.as_str()),
        ],
    }
}

fn drawing(plan: &Plan) -> Drawing {
    let Some(instances) = &plan.instances else {
        return Drawing {
            nodes: (0..plan.steps.len())
                .map(|s| {
                    let lines = caption(plan, s);
                    (
                        lines[0].clone(),
                        lines,
                        plan.steps[s].when != When::Success,
                        None,
                    )
                })
                .collect(),
            order: plan.dag.order.clone(),
            needs: plan.steps.iter().map(|s| s.needs.clone()).collect(),
            batches: 0,
        };
    };
    Drawing {
        nodes: instances
            .list
            .iter()
            .map(|instance| {
                let mut lines = caption(plan, instance.step);
                let id = instance_id(&plan.steps, &plan.hosts, instance);
                lines[0].clone_from(&id);
                let batch = instance.host.and_then(|h| instances.batch[h]);
                (
                    id,
                    lines,
                    plan.steps[instance.step].when != When::Success,
                    batch,
                )
            })
            .collect(),
        order: instances.dag.order.clone(),
        batches: instances.batches(),
        needs: instances.needs.clone(),
    }
}

/// The hosts of batch `b`, for its caption.
fn batch_caption(drawing: &Drawing, b: usize) -> String {
    let mut hosts: Vec<&str> = Vec::new();
    for (id, _, _, batch) in &drawing.nodes {
        if *batch == Some(b)
            && let Some((_, host)) = id.rsplit_once('@')
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
    }
    format!("batch {}: {}", b + 1, hosts.join(", "))
}

pub fn dot(plan: &Plan) -> String {
    let d = drawing(plan);
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", label(&plan.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    let node = |out: &mut String, n: usize, indent: &str| {
        let (id, lines, after, _) = &d.nodes[n];
        let style = if *after { ", style=dashed" } else { "" };
        let text: Vec<String> = lines.iter().map(|l| label(l)).collect();
        let _ = writeln!(
            out,
            "{indent}\"{}\" [label=\"{}\"{style}];",
            label(id),
            text.join("\\n")
        );
    };
    for b in 0..d.batches {
        let _ = writeln!(out, "  subgraph \"cluster_batch_{b}\" {{");
        let _ = writeln!(out, "    label=\"{}\";", label(&batch_caption(&d, b)));
        for &n in d.order.iter().filter(|&&n| d.nodes[n].3 == Some(b)) {
            node(&mut out, n, "    ");
        }
        out.push_str("  }\n");
    }
    for &n in d.order.iter().filter(|&&n| d.nodes[n].3.is_none()) {
        node(&mut out, n, "  ");
    }
    for &n in &d.order {
        for &need in &d.needs[n] {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                label(&d.nodes[need].0),
                label(&d.nodes[n].0)
            );
        }
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(plan: &Plan) -> String {
    let d = drawing(plan);
    // Step ids may hold `-`, which Mermaid reads as an edge: nodes are s0, s1, …
    let mut out = String::from("flowchart LR\n");
    let node = |out: &mut String, n: usize, indent: &str| {
        let text = d.nodes[n].1.join("<br/>");
        let _ = writeln!(out, "{indent}s{n}[\"{}\"]", text.replace('"', "#quot;"));
    };
    for b in 0..d.batches {
        let _ = writeln!(
            out,
            "  subgraph b{b}[\"{}\"]",
            batch_caption(&d, b).replace('"', "#quot;")
        );
        for &n in d.order.iter().filter(|&&n| d.nodes[n].3 == Some(b)) {
            node(&mut out, n, "    ");
        }
        out.push_str("  end\n");
    }
    for &n in d.order.iter().filter(|&&n| d.nodes[n].3.is_none()) {
        node(&mut out, n, "  ");
    }
    for &n in &d.order {
        for &need in &d.needs[n] {
            let _ = writeln!(out, "  s{need} --> s{n}");
        }
    }
    out
}
