//! The `bench serve` harness on a tiny repository, edgelab's server only:
//! proves the pieces (tree, commit, server start and stop, timed `ostree
//! pull`, wrk with its report hook, the table) work, without benchmarking.
//! The benchmark itself is a command: `cargo xtask bench-serve`.

use std::time::Duration;

use edgelab::cli::bench_serve::{BenchConfig, ServerKind, measure, render_table};

#[test]
fn harness_measures_edgelab_on_a_tiny_repo() {
    let temp = tempfile::tempdir().unwrap();
    let config = BenchConfig {
        n_small_files: 60,
        n_large_files: 1,
        servers: vec![ServerKind::EdgelabQuiet],
        pull_runs: 1,
        wrk_duration: Some(Duration::from_secs(1)),
        wrk_threads: 1,
        wrk_connections: 4,
        head_to_head_rounds: 0,
    };
    let report = measure(&config, temp.path()).unwrap();

    assert_eq!(report.repo.files, 61);
    // Every file is an object, plus dirtrees, dirmetas and the commit.
    assert!(report.repo.objects > 61, "{:?}", report.repo);
    let [server] = report.servers.as_slice() else { panic!("one server measured: {:?}", report.servers) };
    assert_eq!(server.pull_seconds.runs.len(), 1);
    assert!(server.pull_seconds.median > 0.0);
    let rps = server.wrk_rps.as_ref().expect("wrk ran");
    assert!(rps.small_object > 0.0 && rps.objects > 0.0, "{rps:?}");
    assert!(!server.notes.contains("errors"), "wrk saw errors: {}", server.notes);
    let table = render_table(&report);
    assert!(table.contains("edgelab (--quiet)"), "{table}");
}
