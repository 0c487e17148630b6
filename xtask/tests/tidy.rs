//! Repository invariants, checked like any other behaviour: the demo lab
//! parses, only `tools/` starts processes, ARCHITECTURE.md names every module,
//! no test names the tracked benchmark results, and the code is formatted.

// Tests may start processes (`cargo fmt --check` here); the product may not.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "rs"))
        .map(|entry| entry.into_path())
        .collect()
}

#[test]
fn demo_lab_parses() {
    let lab_file = project_root().join("lab.kdl");
    match edgelab::lab::parse_lab_file(&lab_file) {
        Ok(lab) => assert_eq!(lab.name, "rfe-demo"),
        Err(err) => panic!("lab.kdl does not parse:\n{}", err.to_plain()),
    }
}

#[test]
fn only_tools_start_processes() {
    let root = project_root();
    let mut offenders = Vec::new();
    for crate_src in ["xtask/src", "host/src"] {
        for file in rust_files(&root.join(crate_src)) {
            let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("xtask/src/tools/") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("Command::new") || code.contains("process::Command") || code.contains("duct::cmd") {
                    offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "processes started outside xtask/src/tools/:\n{}", offenders.join("\n"));
}

#[test]
fn architecture_names_every_module() {
    let root = project_root();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for crate_src in ["xtask/src", "host/src"] {
        for file in rust_files(&root.join(crate_src)) {
            let rel = file.strip_prefix(root.join(crate_src)).unwrap();
            let name = match rel.file_name().unwrap().to_str().unwrap() {
                "mod.rs" => rel.parent().unwrap().to_string_lossy().into_owned() + "/",
                "lib.rs" | "main.rs" => continue,
                other => {
                    let stem = other.trim_end_matches(".rs");
                    match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                        Some(parent) => format!("{}/{stem}", parent.to_string_lossy()),
                        None => stem.to_string(),
                    }
                }
            };
            // Named as `name` or `name.rs` in backticks.
            let plain = name.trim_end_matches('/');
            if !architecture.contains(&format!("`{name}`"))
                && !architecture.contains(&format!("`{plain}.rs`"))
                && !architecture.contains(&format!("`{plain}`"))
            {
                missing.push(format!("{crate_src}/{}", rel.display()));
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md does not name these modules:\n{}", missing.join("\n"));
}

#[test]
fn code_is_formatted() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["fmt", "--all", "--check"])
        .current_dir(project_root())
        .output()
        .expect("running cargo fmt");
    assert!(
        output.status.success(),
        "cargo fmt --check found unformatted code (run `cargo fmt --all`):\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Benchmark results come from `cargo xtask bench ...` only: a test that
/// named `bench/results` could rewrite a tracked file on every `cargo test`.
#[test]
fn no_test_writes_bench_results() {
    let root = project_root();
    let this_file = root.join("xtask/tests/tidy.rs");
    let offenders: Vec<String> = rust_files(&root.join("xtask/tests"))
        .into_iter()
        .filter(|file| *file != this_file)
        .filter(|file| std::fs::read_to_string(file).unwrap().contains("bench/results"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "tests naming bench/results (use `cargo xtask bench`):\n{}", offenders.join("\n"));
}
