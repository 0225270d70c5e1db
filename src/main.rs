fn main() {
    // Debug logs of the engine itself (scheduling, process groups), for whoever
    // works on runner: `RUNNER_LOG=debug runner apply …`. Off by default.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUNNER_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    std::process::exit(runner::run(std::env::args_os()));
}
