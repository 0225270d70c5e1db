fn main() {
    std::process::exit(runner::run(std::env::args_os()));
}
