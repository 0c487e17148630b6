//! Repository invariants, checked like any other behaviour: the demo lab
//! parses, only `tools/` starts processes and every program it starts is
//! declared, the core crate stays pure, worlds are chosen only in the two
//! world modules, ARCHITECTURE.md names every module
//! exactly once and repeats no heading, no test names the tracked benchmark
//! results, and the code is formatted.

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
    for crate_src in ["xtask/src", "xtask/core/src", "host/src"] {
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

/// The lines of `text` that ask which world they are in: a backend or a
/// world variant other than `auto`, named outside the world modules.
fn world_branches(rel: &str, text: &str) -> Vec<String> {
    const VARIANTS: [&str; 8] = [
        "Backend::Rhel",
        "Backend::Local",
        "GuestWorld::Local",
        "GuestWorld::Libvirt",
        "RegistryWorld::Local",
        "RegistryWorld::Podman",
        "ComposeWorld::Local",
        "ComposeWorld::Weldr",
    ];
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            VARIANTS.iter().any(|variant| code.contains(variant))
        })
        .map(|(n, line)| format!("{rel}:{}: {}", n + 1, line.trim()))
        .collect()
}

#[test]
fn worlds_are_chosen_only_in_the_world_modules() {
    let root = project_root();
    let mut offenders = Vec::new();
    for crate_src in ["xtask/src", "xtask/core/src", "host/src"] {
        for file in rust_files(&root.join(crate_src)) {
            let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            if rel == "xtask/src/world.rs" || rel == "xtask/core/src/world.rs" {
                continue;
            }
            offenders.extend(world_branches(&rel, &std::fs::read_to_string(&file).unwrap()));
        }
    }
    assert!(offenders.is_empty(), "worlds chosen outside the world modules:\n{}", offenders.join("\n"));
}

#[test]
fn the_world_check_catches_a_branch() {
    let planted = "fn f(lab: &Lab) {\n    if lab.backends.for_guests() == Backend::Rhel {\n    }\n}\n";
    let found = world_branches("xtask/src/cli/planted.rs", planted);
    assert_eq!(found, vec!["xtask/src/cli/planted.rs:2: if lab.backends.for_guests() == Backend::Rhel {"]);
    assert!(world_branches("x.rs", "// Backend::Rhel in a comment\nlet b = Backend::Auto;\n").is_empty());
}

/// Every module of the product crates, as ARCHITECTURE.md names it: the path
/// relative to its crate's `src/` without `.rs` (`stages/prereqs`), or the
/// folder with a slash for a `mod.rs` (`stages/`).
fn module_names() -> Vec<(String, String)> {
    let root = project_root();
    let mut names = Vec::new();
    for crate_src in ["xtask/src", "xtask/core/src", "host/src"] {
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
            names.push((format!("{crate_src}/{}", rel.display()), name));
        }
    }
    names
}

/// The text of every `code span` in a Markdown document.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[track_caller]
fn check_architecture(architecture: &str, modules: &[(String, String)]) -> Vec<String> {
    let spans = code_spans(architecture);
    let mut problems = Vec::new();
    for (file, name) in modules {
        let plain = name.trim_end_matches('/');
        let forms = [name.clone(), format!("{plain}.rs"), plain.to_string()];
        let n = spans.iter().filter(|span| forms.iter().any(|form| form == *span)).count();
        match n {
            0 => problems.push(format!("{file}: not named (write `{name}`)")),
            1 => {}
            n => problems.push(format!("{file}: named {n} times as `{name}`; name each module once")),
        }
    }
    let mut headings = std::collections::BTreeMap::new();
    for line in architecture.lines().filter(|line| line.starts_with('#')) {
        *headings.entry(line.trim()).or_insert(0) += 1;
    }
    for (heading, n) in headings {
        if n > 1 {
            problems.push(format!("heading `{heading}` appears {n} times"));
        }
    }
    // A module path that names no file is a stale description.
    let known: std::collections::BTreeSet<&str> = modules.iter().map(|(_, name)| name.as_str()).collect();
    let folders = ["cli/", "stages/", "tools/", "guests/", "services/", "store/", "compose/", "demo/", "lab/"];
    for span in &spans {
        let is_module_path = folders.iter().any(|folder| span.starts_with(folder) && span.len() > folder.len())
            && span.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '/');
        if is_module_path && !known.contains(span) && !known.contains(format!("{span}/").as_str()) {
            problems.push(format!("`{span}` names no module"));
        }
    }
    problems
}

#[test]
fn architecture_names_every_module_once_and_repeats_no_heading() {
    let architecture = std::fs::read_to_string(project_root().join("ARCHITECTURE.md")).unwrap();
    let problems = check_architecture(&architecture, &module_names());
    assert!(problems.is_empty(), "ARCHITECTURE.md:\n{}", problems.join("\n"));
}

#[test]
fn the_architecture_check_catches_damage() {
    let modules = vec![
        ("xtask/src/stages/mod.rs".to_string(), "stages/".to_string()),
        ("xtask/src/stages/repo.rs".to_string(), "stages/repo".to_string()),
        ("xtask/src/hash.rs".to_string(), "hash".to_string()),
    ];
    let damaged = "## Code map\n### `stages/`\n`stages/repo` and `stages/repo`; `stages/gone`.\n## Code map\n";
    assert_eq!(
        check_architecture(damaged, &modules),
        vec![
            "xtask/src/stages/repo.rs: named 2 times as `stages/repo`; name each module once",
            "xtask/src/hash.rs: not named (write `hash`)",
            "heading `## Code map` appears 2 times",
            "`stages/gone` names no module",
        ]
    );
}

#[test]
fn the_core_crate_has_no_process_network_or_syscall_dependency() {
    let manifest = std::fs::read_to_string(project_root().join("xtask/core/Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for forbidden in ["tokio", "hyper", "libc", "rustix", "duct", "ureq", "nix", "walkdir", "tempfile"] {
        assert!(
            !dependencies.lines().any(|line| line.trim_start().starts_with(forbidden)),
            "xtask/core depends on `{forbidden}`; the pure core must not"
        );
    }
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
