//! Repository invariants, checked like any other behaviour: the demo lab
//! parses, only `tools/` starts processes, ARCHITECTURE.md names every module,
//! and the code is formatted.

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

/// The program names a wrapper in `xtask/src/tools/` starts or looks up
/// literally: `Cmd::new("X")`, `require("X")`, `which("X")`,
/// `netns_exec(.., "X")`.
fn programs_started_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for opener in ["Cmd::new(\"", "require(\"", "which(\"", "netns_exec(netns, \""] {
        let mut rest = text;
        while let Some(at) = rest.find(opener) {
            rest = &rest[at + opener.len()..];
            if let Some(end) = rest.find('"') {
                found.push(rest[..end].to_string());
            }
        }
    }
    found
}

#[test]
fn every_program_a_wrapper_starts_is_declared() {
    let root = project_root();
    let mut undeclared = Vec::new();
    let mut n_seen = 0;
    for file in rust_files(&root.join("xtask/src/tools")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for program in programs_started_in(&text) {
            n_seen += 1;
            if edgelab::tools::packages::find(&program).is_none() {
                let rel = file.strip_prefix(&root).unwrap().display().to_string();
                undeclared.push(format!("{rel}: `{program}`"));
            }
        }
    }
    // The scan itself must see the wrappers' programs, or this proves nothing.
    assert!(n_seen >= 40, "only {n_seen} program names found under xtask/src/tools/: is the scan broken?");
    assert!(
        undeclared.is_empty(),
        "programs started but declared in no wrapper's PROGRAMS (the prereqs stage would not install them):\n{}",
        undeclared.join("\n")
    );
}

#[test]
fn every_stage_tool_is_declared() {
    let lab = edgelab::lab::parse_lab_file(&project_root().join("lab.kdl")).unwrap();
    for rhel in [false, true] {
        let lab = edgelab::graph::resolve_backends(&lab, rhel);
        for stage in edgelab::graph::build(&lab).stages {
            for tool in &stage.tools {
                assert!(
                    edgelab::tools::packages::find(tool).is_some(),
                    "stage `{}` runs `{tool}`, which no wrapper declares",
                    stage.id
                );
            }
        }
    }
}

#[test]
fn the_scan_finds_what_a_wrapper_starts() {
    let text = r#"super::require("figlet")?; Cmd::new("figlet").arg("x"); super::which("cowsay"); ip::netns_exec(netns, "qemu-system-x86_64")"#;
    assert_eq!(programs_started_in(text), vec!["figlet", "figlet", "cowsay", "qemu-system-x86_64"]);
}
