use clap::Parser;

fn main() -> std::process::ExitCode {
    myoscope::runtime::tune_allocator();
    let cli = myoscope::cli::Cli::parse();
    match myoscope::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
