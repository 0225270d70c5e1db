//! The step graph: order, waves, critical path, cycles and redundant needs.
//!
//! Steps are numbered in declaration order; an edge `need -> step` means the step
//! waits for its need. Ties in the order are broken by declaration, so the preview
//! reads like the plan.

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

/// A checked, acyclic step graph.
#[derive(Debug, Clone)]
pub struct Dag {
    needs: Vec<Vec<usize>>,
    /// Steps in execution order: by wave, then by declaration.
    pub order: Vec<usize>,
    /// Wave of each step, from 0: one more than its deepest need.
    pub wave: Vec<usize>,
}

/// A need already implied by another: `step` needs `need` directly and also
/// through `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redundant {
    pub step: usize,
    pub need: usize,
    pub via: usize,
}

impl Dag {
    /// Builds the graph, or returns every cycle as a path of steps
    /// (`[a, b, c]` reads `a` needs `b` needs `c` needs `a`). Self-loops are the
    /// caller's to report; they are ignored here.
    pub fn build(needs: Vec<Vec<usize>>) -> Result<Self, Vec<Vec<usize>>> {
        let n = needs.len();
        let mut graph = DiGraph::<(), ()>::with_capacity(n, needs.iter().map(Vec::len).sum());
        for _ in 0..n {
            graph.add_node(());
        }
        for (step, its_needs) in needs.iter().enumerate() {
            for &need in its_needs {
                if need != step {
                    graph.add_edge(NodeIndex::new(need), NodeIndex::new(step), ());
                }
            }
        }
        let Ok(topo) = toposort(&graph, None) else {
            return Err(cycles(&graph, &needs));
        };
        let mut wave = vec![0; n];
        for node in topo {
            let step = node.index();
            wave[step] = needs[step]
                .iter()
                .filter(|&&need| need != step)
                .map(|&need| wave[need] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&s| (wave[s], s));
        Ok(Self { needs, order, wave })
    }

    /// Whether `ancestor` must succeed before `step` can start (directly or not).
    pub fn is_ancestor(&self, ancestor: usize, step: usize) -> bool {
        let mut seen = vec![false; self.needs.len()];
        let mut stack: Vec<usize> = self.needs[step].clone();
        while let Some(s) = stack.pop() {
            if s == ancestor {
                return true;
            }
            if !std::mem::replace(&mut seen[s], true) {
                stack.extend(&self.needs[s]);
            }
        }
        false
    }

    /// The longest chain of needs among `steps` (by number of steps), root first.
    pub fn critical_path(&self, include: impl Fn(usize) -> bool) -> Vec<usize> {
        let n = self.needs.len();
        let mut depth = vec![0usize; n];
        let mut prev: Vec<Option<usize>> = vec![None; n];
        let mut best: Option<usize> = None;
        for &s in &self.order {
            if !include(s) {
                continue;
            }
            for &need in &self.needs[s] {
                if include(need) && depth[need] + 1 > depth[s] {
                    depth[s] = depth[need] + 1;
                    prev[s] = Some(need);
                }
            }
            if best.is_none_or(|b| depth[s] > depth[b]) {
                best = Some(s);
            }
        }
        let mut path = Vec::new();
        let mut cursor = best;
        while let Some(s) = cursor {
            path.push(s);
            cursor = prev[s];
        }
        path.reverse();
        path
    }

    /// Needs that another need already implies (the edges a transitive reduction
    /// removes). Ancestors are tracked 64 steps of the order at a time, one `u64` per
    /// step, so memory stays linear in the number of steps.
    pub fn redundant_needs(&self) -> Vec<Redundant> {
        let n = self.needs.len();
        let mut position = vec![0; n];
        for (p, &s) in self.order.iter().enumerate() {
            position[s] = p;
        }
        let mut found = Vec::new();
        let mut ancestors = vec![0u64; n];
        for block in (0..n).step_by(64) {
            let in_block = |step: usize| {
                let p = position[step];
                (block..block + 64)
                    .contains(&p)
                    .then(|| 1u64 << (p - block))
            };
            ancestors.fill(0);
            for &s in &self.order[block..] {
                let mut set = 0;
                for &need in &self.needs[s] {
                    set |= ancestors[need] | in_block(need).unwrap_or(0);
                }
                ancestors[s] = set;
                for &need in &self.needs[s] {
                    let Some(bit) = in_block(need) else { continue };
                    if let Some(&via) = self.needs[s]
                        .iter()
                        .find(|&&other| other != need && ancestors[other] & bit != 0)
                    {
                        found.push(Redundant { step: s, need, via });
                    }
                }
            }
        }
        found.sort_by_key(|r| (r.step, r.need));
        found
    }
}

/// Every cycle, one per strongly connected component, as a path through needs.
fn cycles(graph: &DiGraph<(), ()>, needs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for scc in tarjan_scc(graph) {
        if scc.len() < 2 {
            continue;
        }
        let members: Vec<usize> = scc.iter().map(|n| n.index()).collect();
        let start = *members.iter().min().unwrap_or(&0);
        // Breadth-first through needs inside the component, back to `start`.
        let mut parent: Vec<Option<usize>> = vec![None; needs.len()];
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(s) = queue.pop_front() {
            for &need in &needs[s] {
                if !members.contains(&need) {
                    continue;
                }
                if need == start {
                    last = Some(s);
                    break 'search;
                }
                if parent[need].is_none() {
                    parent[need] = Some(s);
                    queue.push_back(need);
                }
            }
        }
        let mut path = Vec::new();
        let mut cursor = last;
        while let Some(s) = cursor {
            path.push(s);
            cursor = if s == start { None } else { parent[s] };
        }
        path.reverse();
        out.push(path);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_and_order_follow_needs() {
        // 0 <- 1, 0 <- 2, {1,2} <- 3
        let dag = Dag::build(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(dag.wave, vec![0, 1, 1, 2]);
        assert_eq!(dag.order, vec![0, 1, 2, 3]);
        assert_eq!(dag.critical_path(|_| true), vec![0, 1, 3]);
        assert!(dag.is_ancestor(0, 3));
        assert!(!dag.is_ancestor(1, 2));
    }

    #[test]
    fn cycles_come_back_as_paths() {
        // 0 needs 1, 1 needs 2, 2 needs 0; 3 is fine.
        let cycles = Dag::build(vec![vec![1], vec![2], vec![0], vec![]]).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1, 2]]);
    }

    #[test]
    fn redundant_needs_are_found_across_blocks() {
        // A chain of 200 steps; the last also needs step 0 directly.
        let mut needs: Vec<Vec<usize>> = (0..200)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        needs[199].push(0);
        needs[100].push(98);
        let dag = Dag::build(needs).unwrap();
        assert_eq!(
            dag.redundant_needs(),
            vec![
                Redundant {
                    step: 100,
                    need: 98,
                    via: 99
                },
                Redundant {
                    step: 199,
                    need: 0,
                    via: 198
                }
            ]
        );
    }
}
