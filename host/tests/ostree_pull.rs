//! `ostree pull` through the server, checked against the repository: the
//! counters must account for exactly the files OSTree fetched.
//!
//! With no summary file, a pull of one ref into an empty repository asks for
//! the ref, then every object reachable from the commit (the commit, its
//! dirtrees and dirmetas, one `.filez` per distinct file), each once. Around
//! that it probes for a few optional files that this repository does not
//! have (`summary`, `summary.sig`, the commit's detached `.commitmeta`; some
//! versions also `config`), which answer 404. So the files answered 200 must
//! be exactly the ref plus every file under `objects/`, each once; every
//! other request must be one of those optional probes; and `bytes_sent` must
//! equal the sizes of the 200 files plus the 404 bodies.

// These tests drive real programs (the server binary, ostree); the rule that
// only xtask's tools/ starts processes is about xtask.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use support::{ServeProcess, require_tool, run_ok};

const N_DIRECTORIES: usize = 30;
const FILES_PER_DIRECTORY: usize = 100;
/// The body of a 404, which counts as bytes sent like any body.
const NOT_FOUND_BODY_BYTES: u64 = "not found\n".len() as u64;

#[test]
fn ostree_pull_is_counted_exactly() {
    require_tool("ostree", "ostree");
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("tree");
    let source_repo = scratch.path().join("source-repo");
    let pulled_repo = scratch.path().join("pulled-repo");
    let log_path = scratch.path().join("serve.log");
    write_tree(&tree);

    ostree(&source_repo, &["init", "--mode=archive"]);
    let commit_output =
        ostree(&source_repo, &["commit", "--branch=edge", "--subject=test", &format!("--tree=dir={}", tree.display())]);
    let commit = String::from_utf8(commit_output.stdout).unwrap().trim().to_owned();
    assert_eq!(commit.len(), 64, "commit checksum {commit:?}");

    let server = ServeProcess::start(&source_repo, &["--log", log_path.to_str().unwrap()]);
    ostree(&pulled_repo, &["init", "--mode=archive"]);
    ostree(&pulled_repo, &["remote", "add", "--no-gpg-verify", "lab", &server.url("")]);
    ostree(&pulled_repo, &["pull", "lab", "edge"]);

    let pulled_commit = ostree(&pulled_repo, &["rev-parse", "lab:edge"]);
    assert_eq!(String::from_utf8(pulled_commit.stdout).unwrap().trim(), commit);
    ostree(&pulled_repo, &["fsck"]);

    let counters = server.counters();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let requests = parse_log(&log);

    // The files OSTree must have fetched, with their sizes.
    let mut expected_files = files_under(&source_repo, "objects");
    let n_objects = expected_files.len();
    assert!(n_objects > N_DIRECTORIES * FILES_PER_DIRECTORY, "{n_objects} objects");
    let ref_path = "/refs/heads/edge".to_owned();
    expected_files.insert(ref_path.clone(), file_size(&source_repo, &ref_path));

    let commitmeta = format!("/objects/{}/{}.commitmeta", &commit[..2], &commit[2..]);
    let optional_probes: BTreeSet<String> =
        ["/summary", "/summary.sig", "/config", &commitmeta].into_iter().map(str::to_owned).collect();

    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut n_not_found = 0u64;
    for (status, path) in &requests {
        match status {
            200 => *served.entry(path.clone()).or_default() += 1,
            404 => {
                assert!(optional_probes.contains(path), "unexpected 404 for {path}");
                n_not_found += 1;
            }
            _ => panic!("unexpected status {status} for {path}"),
        }
    }
    let served_twice: Vec<_> = served.iter().filter(|(_, count)| **count > 1).collect();
    assert!(served_twice.is_empty(), "fetched more than once: {served_twice:?}");
    let served_paths: BTreeSet<&String> = served.keys().collect();
    let expected_paths: BTreeSet<&String> = expected_files.keys().collect();
    assert_eq!(served_paths, expected_paths, "the files served are the ref and every object");
    assert!(n_not_found <= optional_probes.len() as u64);

    let expected_requests = expected_files.len() as u64 + n_not_found;
    let expected_bytes = expected_files.values().sum::<u64>() + n_not_found * NOT_FOUND_BODY_BYTES;
    assert_eq!(requests.len() as u64, expected_requests, "log lines");
    assert_eq!(counters["requests"], expected_requests, "{counters}");
    assert_eq!(counters["bytes_sent"], expected_bytes, "{counters}");
    assert_eq!(counters["rejected"], 0, "{counters}");
    assert_eq!(counters["clients"]["127.0.0.1"]["requests"], expected_requests);
    assert_eq!(counters["clients"]["127.0.0.1"]["bytes_sent"], expected_bytes);
}

fn ostree(repo: &Path, args: &[&str]) -> std::process::Output {
    run_ok(Command::new("ostree").arg(format!("--repo={}", repo.display())).args(args))
}

/// A tree of small files of varied sizes, plus one larger than the server's
/// small-file threshold so the streaming path is pulled too. Content comes
/// from a fixed xorshift generator: distinct per file and incompressible, so
/// the `.filez` objects keep their sizes.
fn write_tree(tree: &Path) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    for directory_idx in 0..N_DIRECTORIES {
        let directory = tree.join(format!("dir{directory_idx:02}"));
        std::fs::create_dir_all(&directory).unwrap();
        for file_idx in 0..FILES_PER_DIRECTORY {
            let size = 16 + (directory_idx * 7919 + file_idx * 104_729) % 4000;
            let content: Vec<u8> = (0..size).map(|_| next_byte()).collect();
            std::fs::write(directory.join(format!("file{file_idx:03}")), content).unwrap();
        }
    }
    let large: Vec<u8> = (0..300_000).map(|_| next_byte()).collect();
    std::fs::write(tree.join("large.bin"), large).unwrap();
}

/// Every file under `root/folder`, keyed by its URL path, with its size.
fn files_under(root: &Path, folder: &str) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.join(folder)];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                pending.push(entry.path());
                continue;
            }
            let relative = entry.path().strip_prefix(root).unwrap().to_str().unwrap().to_owned();
            files.insert(format!("/{relative}"), metadata.len());
        }
    }
    files
}

fn file_size(root: &Path, url_path: &str) -> u64 {
    std::fs::metadata(root.join(url_path.trim_start_matches('/'))).unwrap().len()
}

/// (status, path) of every request line in the log, which reads
/// `    N    X.XXX MB  ADDR:PORT  STATUS  METHOD PATH`.
fn parse_log(log: &str) -> Vec<(u16, String)> {
    log.lines()
        .filter(|line| line.contains(" MB  ") && !line.starts_with("summary"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[5], "GET", "{line}");
            (fields[4].parse().unwrap(), fields[6].to_owned())
        })
        .collect()
}
