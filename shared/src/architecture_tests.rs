//! The module rules of docs/architecture.md, checked on the source: no cycle between
//! the top-level modules of `shared`, and a domain crate that does no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its text up to its first `#[cfg(test)]`.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_string();
            out.push((path, code));
        }
    }
    out
}

/// The top-level module a file belongs to (`store/dynamo/keys.rs` → `store`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level names a path after `crate::` starts with: `x::…` → `x`, and a group
/// `{a, b::{c, d}, e as f}` → `a`, `b`, `e`.
fn named_after_crate(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let (mut depth, mut names, mut start) = (0usize, Vec::new(), 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                names.push(ident(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(ident(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Which top-level modules each one names (`crate::x`, `crate::{x, y::z}`), tests
/// excluded.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources(&src()).iter().map(|(p, _)| module_of(p)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources(&src()) {
        let from = module_of(&path);
        if from.ends_with("_tests") || from == "test_server" || from == "lib" {
            continue;
        }
        let deps = edges.entry(from.clone()).or_default();
        for part in code.split("crate::").skip(1) {
            for name in named_after_crate(part) {
                if modules.contains(&name) && name != from {
                    deps.insert(name);
                }
            }
        }
    }
    edges
}

fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_form_no_cycle() {
    let edges = graph();
    assert!(
        edges["sessions"].contains("access"),
        "the graph is read: {edges:?}"
    );
    assert_eq!(cycle(&edges), None, "{edges:#?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&edges).unwrap().len(), 4);
}

#[test]
fn use_cases_depend_on_access_and_never_on_the_consumers() {
    let edges = graph();
    for module in [
        "service",
        "sessions",
        "checkpoints",
        "agents",
        "jobs",
        "access",
    ] {
        assert!(!edges[module].contains("consumers"), "{module}");
        assert!(!edges[module].contains("http"), "{module}");
    }
    for leaf_user in ["access"] {
        for usecase in ["service", "sessions", "checkpoints", "agents"] {
            assert!(
                !edges[leaf_user].contains(usecase),
                "access depends on {usecase}"
            );
        }
    }
}

#[test]
fn grouped_imports_are_read() {
    assert_eq!(named_after_crate("store::Store;"), ["store"]);
    assert_eq!(
        named_after_crate("{sessions, checkpoints::{self, x}, access::App as A};"),
        ["sessions", "checkpoints", "access"]
    );
    let edges = graph();
    // `http/mod.rs` names the use cases only in a grouped `use crate::{…}`.
    assert!(edges["http"].contains("sessions"), "{edges:?}");
    assert!(edges["http"].contains("checkpoints"), "{edges:?}");
}

/// The domain is its own crate, so the compiler keeps AWS and I/O out of it as long as
/// its manifest lists none; and it reads neither the clock nor randomness (callers pass
/// `now` and new ids in: `clock.rs`).
#[test]
fn the_domain_crate_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    assert!(names.contains(&"serde"), "the manifest is read: {names:?}");
    for name in names {
        for io in [
            "aws", "tokio", "hyper", "http", "lambda", "reqwest", "uuid", "rand", "studios",
        ] {
            assert!(!name.contains(io), "studios-domain depends on {name}");
        }
    }
    for (path, code) in sources(&root.join("src")) {
        for reads in [
            "Utc::now",
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "std::env",
        ] {
            assert!(!code.contains(reads), "{} uses {reads}", path.display());
        }
    }
}

/// The Lambda binary links the control plane only: no test fixtures (`local`), no
/// agent, relay or local run (docs/architecture.md).
#[test]
fn the_lambda_binary_links_no_fixture_agent_or_relay() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/Cargo.toml"),
    )
    .unwrap();
    assert!(manifest.contains("studios-shared"), "the manifest is read");
    for banned in [
        "\"local\"",
        "studios-agent",
        "studios-relay",
        "studios-local",
    ] {
        assert!(
            !manifest.contains(banned),
            "functions/Cargo.toml names {banned}"
        );
    }
}
