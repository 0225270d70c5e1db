//! Short blocking work (probes, checks, connections) run on threads of their
//! own, a bounded number at once, results in the items' order.

/// Runs `f` on each item, up to `at_once` at a time; results in order. A panic
/// in `f` is raised again here.
pub(crate) fn each<T: Send, R: Send>(
    items: Vec<T>,
    at_once: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<T> = items.by_ref().take(at_once.max(1)).collect();
        std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> = chunk
                .into_iter()
                .map(|item| scope.spawn(move || f(item)))
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(r) => out.push(r),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
    }
    out
}
