// SPDX-License-Identifier: GPL-2.0-only
//! The `dmrs` command (see `dmrs --help`).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    dmrs_hosted::log::init();
    let cli = dmrs_hosted::cli::Cli::parse();
    let code = dmrs_hosted::command::main_with(cli, &mut std::io::stdout().lock());
    ExitCode::from(code)
}
