fn main() -> std::process::ExitCode {
    pkgmirror::cli::run()
}
