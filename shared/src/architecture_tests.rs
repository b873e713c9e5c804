//! The module rules of docs/architecture.md, checked on the source: no cycle between
//! the top-level modules, and a `domain` that does no I/O.

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

/// Which top-level modules each one names (`crate::x`), tests excluded.
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
            let name: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && name != from {
                deps.insert(name);
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
fn the_domain_does_no_io() {
    let io = [
        "aws_sdk",
        "aws_config",
        "aws_smithy",
        "tokio",
        "hyper",
        "lambda_http",
        "lambda_runtime",
        "std::fs",
        "std::net",
        "reqwest",
    ];
    for (path, code) in sources(&src().join("domain")) {
        for name in io {
            assert!(!code.contains(name), "{} uses {name}", path.display());
        }
        for module in [
            "store", "service", "sessions", "access", "http", "compute", "objects", "events",
        ] {
            assert!(
                !code.contains(&format!("crate::{module}")),
                "{} depends on crate::{module}",
                path.display()
            );
        }
    }
}
