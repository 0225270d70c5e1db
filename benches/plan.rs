//! Load + validate + preview of generated plans (1,000 and 10,000 steps).
//!
//!   cargo bench --bench plan
//!
//! Each step needs 3 distinct random earlier steps (a random DAG), declared in
//! order. Docker discovery is left out (it is one process spawn, the same for any
//! plan); everything else `runner apply --plan-only` does is measured. Peak heap is
//! measured with a counting allocator over one load + validate + preview.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use runner::docker::Docker;
use runner::plan::{Inputs, load_str};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A plan of `n` shell steps, each needing 3 random earlier steps.
fn generate(n: usize) -> String {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut text =
        String::from("[plan]\nname = \"generated\"\njobs = 8\n\n[vars]\napp = \"web\"\n\n");
    for i in 0..n {
        let mut needs: Vec<usize> = Vec::new();
        while needs.len() < 3.min(i) {
            let need = usize::try_from(next() % i as u64).unwrap_or(0);
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
        let needs: Vec<String> = needs.iter().map(|n| format!("\"step-{n}\"")).collect();
        let _ = write!(
            text,
            "[steps.step-{i}]\nkind = \"shell\"\nneeds = [{}]\nrun = \"echo {{{{ app }}}} {i}\"\nretries = 1\n\n",
            needs.join(", ")
        );
    }
    text
}

/// A plan of `n` shell steps, each needing a step that does not exist (each its
/// own): the worst case for diagnostics, one error a step.
fn unknown_needs(n: usize) -> String {
    let mut text = String::from("[plan]\nname = \"unknown needs\"\n\n");
    for i in 0..n {
        let _ = write!(
            text,
            "[steps.step-{i}]\nkind = \"shell\"\nneeds = [\"missing-{i}\"]\nrun = \"true\"\n\n"
        );
    }
    text
}

/// What `runner validate` does: load, check, render every diagnostic.
fn validate(text: &str) -> usize {
    let inputs = Inputs {
        vars: &[],
        env: &|_| None,
        kinds: runner::KINDS,
    };
    match load_str(
        Path::new("unknown.toml"),
        PathBuf::from("/srv"),
        text.to_owned(),
        &inputs,
    ) {
        Ok(_) => panic!("the plan should be invalid"),
        Err(diagnostics) => diagnostics.render(false).len(),
    }
}

fn docker() -> Docker {
    Docker {
        command: vec!["docker".into()],
        available: true,
        reason: "benchmark".into(),
        tried: Vec::new(),
        help: None,
        compose: None,
        env: Vec::new(),
    }
}

/// Everything `apply --plan-only` does after reading the file.
fn preview(text: &str) -> usize {
    let inputs = Inputs {
        vars: &[],
        env: &|_| None,
        kinds: runner::KINDS,
    };
    let loaded = load_str(
        Path::new("generated.toml"),
        PathBuf::from("/srv"),
        text.to_owned(),
        &inputs,
    )
    .unwrap_or_else(|d| panic!("{}", d.render(false)));
    // As the binary does: warnings are printed (and dropped) before the preview.
    let warnings = loaded.warnings.render(false).len();
    let preview = runner::report::preview::build(&loaded.plan, docker());
    preview.to_text().len() + warnings
}

/// The peak heap one call of `f` reaches above what was allocated before, in MiB.
fn peak_mib(f: impl FnOnce() -> usize) -> f64 {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    black_box(f());
    let peak = PEAK.load(Ordering::Relaxed) - base;
    #[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
    let mib = peak as f64 / (1024.0 * 1024.0);
    mib
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("load+validate+preview");
    group.sample_size(20);
    for n in [1_000, 5_000, 10_000] {
        let text = generate(n);
        let mib = peak_mib(|| preview(&text));
        let kib = text.len() / 1024;
        println!("{n} steps: plan {kib} KiB, peak heap {mib:.1} MiB");
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| preview(black_box(text)));
        });
        // The floor: toml's spanned parse alone, which every load needs.
        group.bench_with_input(BenchmarkId::new("toml parse only", n), &text, |b, text| {
            b.iter(|| toml::de::DeTable::parse(black_box(text)).map_or(0, |t| t.get_ref().len()));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("validate, every step needing an unknown step");
    group.sample_size(10);
    for n in [1_000, 5_000, 10_000] {
        let text = unknown_needs(n);
        let mib = peak_mib(|| validate(&text));
        println!("{n} steps needing unknown steps: peak heap {mib:.1} MiB");
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| validate(black_box(text)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
