//! Prints the store's statements (the files of `sql/`) expanded for a schema, ready for `psql`:
//! `PREPARE` one and `EXPLAIN EXECUTE` it (see `sql/README.md`).
//!
//! ```text
//! cargo run -p matroska-postgres --example statements -- --schema matroska get
//! cargo run -p matroska-postgres --example statements -- --list
//! ```

// Printing the statements is this program's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use matroska_postgres::__private::{STATEMENTS, expand};
use matroska_postgres::SchemaName;

fn main() -> std::process::ExitCode {
    let mut schema = matroska_postgres::DEFAULT_SCHEMA.to_owned();
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--schema" => match args.next() {
                Some(value) => schema = value,
                None => return usage("--schema needs a value"),
            },
            "--list" => {
                for (name, _) in STATEMENTS {
                    println!("{name}");
                }
                return std::process::ExitCode::SUCCESS;
            }
            "-h" | "--help" => return usage(""),
            name => names.push(name.to_owned()),
        }
    }
    let schema = match SchemaName::new(schema) {
        Ok(schema) => schema,
        Err(err) => return usage(&err.to_string()),
    };
    if names.is_empty() {
        names = STATEMENTS
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
    }
    for name in &names {
        let Some((_, text)) = STATEMENTS.iter().find(|(n, _)| n == name) else {
            return usage(&format!("no statement {name:?} (--list shows them)"));
        };
        if names.len() > 1 {
            println!("-- {name}");
        }
        println!("{};", expand(text, &schema));
    }
    std::process::ExitCode::SUCCESS
}

fn usage(problem: &str) -> std::process::ExitCode {
    if !problem.is_empty() {
        eprintln!("statements: {problem}");
    }
    eprintln!("usage: statements [--schema NAME] [--list] [STATEMENT...]");
    if problem.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(2)
    }
}
