//! Runs one target's body over files, without AFL: `replay TARGET FILE...` (a directory
//! stands for the files in it). Prints each file before running it, so that the last name
//! printed before a panic is the input that caused it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let names: Vec<_> = drhub_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    let Some(run) = args.next().as_deref().and_then(drhub_fuzz::target) else {
        eprintln!(
            "usage: replay TARGET FILE|DIR...  (TARGET: {})",
            names.join(", ")
        );
        return ExitCode::from(64);
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for arg in args {
        let path = PathBuf::from(arg);
        if let Err(e) = collect(&path, &mut files) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(66);
        }
    }
    for f in &files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return ExitCode::from(66);
            }
        };
        println!("{}", f.display());
        run(&data);
    }
    println!("{} inputs, no finding", files.len());
    ExitCode::SUCCESS
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        out.extend(entries.into_iter().filter(|p| p.is_file()));
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}
