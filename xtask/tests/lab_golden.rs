//! Golden labs: every malformed lab in `test_data/labs/bad/` against its exact
//! diagnostics (`*.expected`, `UPDATE_EXPECT=1` refreshes them), the demo lab
//! parsing clean, and random mutations of the demo lab never panicking.

use std::path::{Path, PathBuf};

use edgelab::{
    diag::Diagnostics,
    lab::{Lab, parse_lab},
};
use expect_test::expect_file;

fn labs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/labs")
}

/// The repository's demo lab, parsed as if it lived in `test_data/labs/` so its
/// paths reach the small fixtures there.
fn demo_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.kdl");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn parse_in_labs_dir(text: &str) -> Result<Lab, Diagnostics> {
    parse_lab(&labs_dir().join("lab.kdl"), text)
}

/// `err` as plain text with the test data folder stripped from file names.
fn plain(err: &Diagnostics) -> String {
    err.to_plain().replace(&format!("{}/", labs_dir().display()), "")
}

/// Draws `err` the way the CLI does, so a span outside the text would show here.
fn render(err: &Diagnostics) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, err)
        .expect("rendering a report into a String");
    out
}

#[test]
fn demo_lab_parses() {
    let lab = match parse_in_labs_dir(&demo_text()) {
        Ok(lab) => lab,
        Err(err) => panic!("the demo lab does not parse:\n{}", plain(&err)),
    };
    assert_eq!(lab.name, "rfe-demo");
    assert_eq!(lab.images.len(), 2);
    assert_eq!(lab.image("v2").and_then(|image| image.parent.as_deref()), Some("v1"));
    assert_eq!(lab.image("v2").map(|image| image.extra_packages.clone()), Some(vec!["strace".to_string()]));
    assert_eq!(lab.guest("edge-device-1").map(|guest| (guest.memory_mib, guest.disk_gib)), Some((2048, 10)));
    assert_eq!(lab.kickstart.channel, "edge");
    let channel = lab.install_channel().expect("the kickstart's channel");
    assert_eq!((channel.ostree_ref.as_str(), channel.image.as_str()), ("rhel/8/x86_64/edge", "v1"));
    assert_eq!(lab.registry.port, 5000);
    assert_eq!(lab.store.keep_generations, 3);
    assert_eq!(lab.accel, edgelab::lab::AccelSetting::Auto);
    assert!(lab.blueprints[0].file.is_absolute() && lab.blueprints[0].file.ends_with("guest/blueprints/RFE.toml"));
    // The boot ISO is the RHEL world's business: it need not exist here.
    assert!(lab.boot_iso.is_some());
}

/// A lab written before channels (`kickstart image="v1"`, no `channel`)
/// installs from an implicit channel: that image on its own ref.
#[test]
fn a_kickstart_image_without_channels_is_an_implicit_channel() {
    let text = demo_text()
        .replace("channel \"edge\" ref=\"rhel/8/x86_64/edge\" image=\"v1\"", "")
        .replace("channel=\"edge\"", "image=\"v1\"");
    let lab = parse_in_labs_dir(&text).unwrap_or_else(|err| panic!("{}", plain(&err)));
    assert_eq!(lab.kickstart.channel, edgelab::lab::IMPLICIT_CHANNEL);
    assert_eq!(
        lab.channels,
        vec![edgelab::lab::Channel {
            name: edgelab::lab::IMPLICIT_CHANNEL.into(),
            ostree_ref: "rhel/8/x86_64/edge".into(),
            image: "v1".into()
        }]
    );
}

#[test]
fn bad_labs() {
    let bad_dir = labs_dir().join("bad");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&bad_dir)
        .expect("reading test_data/labs/bad")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "kdl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 25, "expected at least 25 malformed labs, found {}", paths.len());
    for path in &paths {
        check_bad(path);
    }
}

#[track_caller]
fn check_bad(path: &Path) {
    let text = std::fs::read_to_string(path).expect("reading a bad lab");
    let err = match parse_lab(path, &text) {
        Ok(_) => panic!("{} parsed, but it is a malformed lab", path.display()),
        Err(err) => err,
    };
    for diag in &err.diagnostics {
        assert!(diag.help.is_some(), "{}: `{}` has no help line", path.display(), diag.message);
    }
    render(&err);
    expect_file![path.with_extension("expected")].assert_eq(&plain(&err));
}

/// Byte deletions, insertions and duplications of the demo lab: whatever comes
/// out, parsing reports or accepts it, and never panics.
#[test]
fn mutations_never_panic() {
    let demo = demo_text().into_bytes();
    let interesting = b"{}\"=#;/\\\n -0123456789aZ()*\t\r.";
    let mut rng = fastrand::Rng::with_seed(0x1ab);
    for iteration in 0..2000 {
        let mut bytes = demo.clone();
        for _ in 0..rng.usize(1..=4) {
            let at = rng.usize(0..bytes.len().max(1));
            match rng.u8(0..4) {
                0 if !bytes.is_empty() => {
                    let len = rng.usize(1..=8).min(bytes.len() - at);
                    bytes.drain(at..at + len);
                }
                1 => bytes.insert(at.min(bytes.len()), interesting[rng.usize(0..interesting.len())]),
                2 => bytes.insert(at.min(bytes.len()), rng.u8(..)),
                _ => {
                    let end = (at + rng.usize(1..=40)).min(bytes.len());
                    let slice = bytes[at.min(end)..end].to_vec();
                    let to = rng.usize(0..=bytes.len());
                    bytes.splice(to..to, slice);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let outcome = std::panic::catch_unwind(|| {
            if let Err(err) = parse_in_labs_dir(&text) {
                assert!(!err.diagnostics.is_empty());
                plain(&err);
                render(&err);
            }
        });
        assert!(outcome.is_ok(), "iteration {iteration} panicked on this lab:\n{text}");
    }
}

/// Generated labs no parser should be given: nesting from a few levels to
/// far past the stack's depth (balanced and not), in a node, a property
/// value and a comment, and files past the size bound. Each is refused with
/// a diagnostic or accepted; none aborts (a stack overflow would end the
/// test binary, so this test would fail).
#[test]
fn generated_nesting_and_size_never_abort() {
    let demo = demo_text();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for _ in 0..200 {
        let depth = match rng.u8(0..3) {
            0 => rng.usize(1..80),
            1 => rng.usize(80..5_000),
            _ => rng.usize(5_000..200_000),
        };
        let closed = rng.bool();
        let nested = format!("n {}{}", "x {".repeat(depth), if closed { "}".repeat(depth) } else { String::new() });
        let at = demo.find("network").unwrap_or(0);
        let text = match rng.u8(0..3) {
            0 => format!("{}{nested}\n{}", &demo[..at], &demo[at..]),
            1 => format!("{demo}\n{nested}\n"),
            _ => format!("{demo}\n// {nested}\n"),
        };
        let outcome = std::panic::catch_unwind(|| match parse_in_labs_dir(&text) {
            Ok(_) => assert!(depth <= edgelab::diag::MAX_NESTING || text.contains("// n "), "depth {depth} accepted"),
            Err(err) => {
                assert!(!err.diagnostics.is_empty());
                plain(&err);
            }
        });
        assert!(outcome.is_ok(), "depth {depth} (closed: {closed}) panicked");
    }
    let huge = format!("{demo}\n// {}\n", "x".repeat(edgelab::diag::MAX_INPUT_BYTES));
    let err = parse_in_labs_dir(&huge).unwrap_err();
    assert!(plain(&err).contains("more than the 1048576 this reads"), "{}", plain(&err));
    // Blueprints are bounded the same way.
    let deep = format!("name = \"x\"\nversion = \"0.0.1\"\na = {}", "[".repeat(100_000));
    let err = edgelab::blueprint::parse_blueprint("deep.toml", &deep).unwrap_err();
    assert!(err.to_plain().contains("nested more than"), "{}", err.to_plain());
}
