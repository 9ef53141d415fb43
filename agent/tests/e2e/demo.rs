//! The demo example (`cargo run -p cygnet-agent --example demo`) seeds the three customers of the
//! seed with real agents, executions, releases and monitors, and prints their dashboards.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` builds the examples next to the test binaries' directory.
pub(crate) fn demo_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let demo = profile_dir.join("examples").join("demo");
    assert!(
        demo.is_file(),
        "{} is missing: run the whole suite (cargo test --workspace builds examples) or \
         `cargo build -p cygnet-agent --example demo` first",
        demo.display()
    );
    demo
}

#[test]
fn the_demo_seeds_every_customer_and_prints_real_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("demo");
    let run = || {
        Command::new(demo_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--web-listen",
                "127.0.0.1:0",
                "--seed-only",
                "--data-dir",
            ])
            .arg(&data_dir)
            .current_dir(dir.path())
            .output()
            .expect("run the demo")
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "Acme Corporation (customer 1)",
        "  agents        3  2 online      pipelines    5  4 succeeding   releases      2  2 active, 1 deploying",
        "  services      4  1 warning     users        6  6 active",
        "TechStart Inc (customer 2)",
        "  agents        2  2 online      pipelines    3  3 succeeding   releases      1  1 active, 0 deploying",
        "GlobalCo (customer 3)",
        "Service \"Redis Cache\" warning - slow response",
        "Service \"External Partner API\" is down: connection refused",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let tokens = std::fs::read_to_string(data_dir.join("tokens.txt")).expect("tokens file");
    assert_eq!(tokens.lines().count(), 11, "{tokens}");

    // A rerun starts over in its own directory; a directory it did not make is left alone.
    assert!(run().status.success(), "rerun");
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).expect("dir");
    std::fs::write(foreign.join("keep.txt"), "precious").expect("file");
    let refused = Command::new(demo_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
            "--seed-only",
            "--data-dir",
        ])
        .arg(&foreign)
        .output()
        .expect("run the demo");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("was not made by the demo"));
    assert!(foreign.join("keep.txt").is_file());
}
