#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! The `otel-collector` command line: `--help`, `--version`, `components`,
//! `validate`, and repeated `--config` files merged as the Go Collector does.

use std::process::{Command, Output};

fn run(args: &[&str]) -> (i32, String, String) {
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_otel-collector"))
        .args(args)
        .output()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const BASE: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
exporters:
  debug:
    verbosity: basic
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nowhere]
"#;

#[test]
fn help_version_and_components() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("otel-collector {}", env!("CARGO_PKG_VERSION")));

    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for word in ["--config", "validate", "components", "--shutdown-timeout"] {
        assert!(out.contains(word), "{word} in:\n{out}");
    }

    let (code, out, _) = run(&["components"]);
    assert_eq!(code, 0);
    for line in [
        "receivers:",
        "processors:",
        "exporters:",
        "extensions:",
        "  tail_sampling:",
        "    settings: verbosity, summary_interval",
        "    accepted, ignored with a warning: sampling_initial, sampling_thereafter, use_internal_logger",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in:\n{out}");
    }

    let (code, _, err) = run(&[]);
    assert_eq!(code, 2, "no --config is a usage error");
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn repeated_configs_merge_maps_and_replace_lists() {
    let dir = std::env::temp_dir().join(format!("otel-collector-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = write(&dir, "base.yaml", BASE);
    // Alone, the base names an exporter that does not exist.
    let (code, _, err) = run(&["validate", "--config", &base]);
    assert_eq!(code, 1);
    assert!(err.contains("nowhere"), "{err}");

    // The override replaces the list and merges into the debug exporter's map.
    let fix = write(
        &dir,
        "fix.yaml",
        "exporters:\n  debug:\n    summary_interval: 0s\nservice:\n  pipelines:\n    traces:\n      exporters: [debug]\n",
    );
    let (code, out, err) = run(&["validate", "-c", &base, "-c", &fix]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid (1 traces pipeline(s))"), "{out}");

    // A later file's value wins, with the path in the error.
    let bad = write(&dir, "bad.yaml", "exporters:\n  debug:\n    verbosity: loud\n");
    let (code, _, err) = run(&["validate", "-c", &base, "-c", &fix, "-c", &bad]);
    assert_eq!(code, 1);
    assert!(err.contains("exporters.debug.verbosity"), "{err}");

    // Unknown components are named with what this collector has.
    let zipkin = write(&dir, "zipkin.yaml", "exporters:\n  zipkin: {}\n");
    let (code, _, err) = run(&["--validate", "-c", &base, "-c", &fix, "-c", &zipkin]);
    assert_eq!(code, 1);
    assert!(err.contains("otlp, otlphttp, file, debug, loadbalancing"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_readme_compatibility_table_names_every_component() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("## Collector compatibility").expect("the section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    for c in otel_collector::sidecar::config::components() {
        let named = section.lines().filter(|l| l.starts_with('|')).any(|l| {
            l.split('|')
                .nth(1)
                .is_some_and(|cell| cell.contains(&format!("`{}`", c.name)))
        });
        assert!(
            named,
            "{} {} has no row in README's compatibility table",
            c.section, c.name
        );
    }
}
