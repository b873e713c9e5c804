//! Results as a table for people (`--output table`, the default) or as the API's own
//! JSON for programs (`--output json`).

use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn rows<F: Fn(&Value) -> Vec<String>>(list: &Value, f: F) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

pub fn workspaces(format: Format, value: &Value) {
    match format {
        Format::Json => json(value),
        Format::Table => print!(
            "{}",
            table(
                &["ID", "NAME", "ROLE"],
                &rows(&value["workspaces"], |w| vec![
                    text(&w["id"]),
                    text(&w["name"]),
                    text(&w["role"])
                ]),
            )
        ),
    }
}

pub fn templates(format: Format, value: &Value) {
    match format {
        Format::Json => json(value),
        Format::Table => print!(
            "{}",
            table(
                &["KIND", "IMAGE"],
                &rows(&value["templates"], |t| vec![
                    text(&t["kind"]),
                    text(&t["image"])
                ]),
            )
        ),
    }
}

fn template(t: &Value) -> String {
    t.get("kind")
        .or_else(|| t.get("image"))
        .map(text)
        .unwrap_or_default()
}

pub fn studio_list(format: Format, studios: &[Value]) {
    match format {
        Format::Json => json(&Value::Array(studios.to_vec())),
        Format::Table => {
            let rows: Vec<Vec<String>> = studios
                .iter()
                .map(|s| {
                    vec![
                        text(&s["id"]),
                        text(&s["name"]),
                        text(&s["status"]),
                        template(&s["template"]),
                        text(&s["computeEnv"]["name"]),
                        text(&s["author"]["name"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "NAME", "STATUS", "TEMPLATE", "COMPUTE ENV", "AUTHOR"],
                    &rows
                )
            );
        }
    }
}

pub fn studio(format: Format, s: &Value) {
    if format == Format::Json {
        return json(s);
    }
    let r = &s["resources"];
    let mut lines = vec![
        ("id", text(&s["id"])),
        ("name", text(&s["name"])),
        ("status", text(&s["status"])),
        ("reason", text(&s["statusReason"])),
        ("template", template(&s["template"])),
        (
            "compute env",
            format!(
                "{} ({})",
                text(&s["computeEnv"]["name"]),
                text(&s["computeEnv"]["id"])
            ),
        ),
        (
            "resources",
            format!(
                "{} CPUs, {} GPUs, {} MiB",
                text(&r["cpus"]),
                text(&r["gpus"]),
                text(&r["memoryMiB"])
            ),
        ),
        ("author", text(&s["author"]["name"])),
    ];
    let packages: Vec<String> = rows(&s["condaPackages"], |p| vec![text(p)]).concat();
    if !packages.is_empty() {
        lines.push(("conda", packages.join(" ")));
    }
    for m in s["mounts"].as_array().into_iter().flatten() {
        lines.push((
            "mount",
            format!(
                "{} → {} ({})",
                text(&m["uri"]),
                text(&m["mountPath"]),
                text(&m["access"])
            ),
        ));
    }
    if let Some(session) = s["session"].as_object() {
        let ready = if session.get("ready") == Some(&Value::Bool(true)) {
            ", ready"
        } else {
            ""
        };
        let progress = session
            .get("progress")
            .filter(|p| !p.is_null())
            .map(|p| format!(", {}", text(p)))
            .unwrap_or_default();
        lines.push((
            "session",
            format!(
                "{} {}{ready}{progress}",
                text(&session["jobId"]),
                text(&session["jobStatus"])
            ),
        ));
    }
    if !s["restoreFrom"].is_null() {
        lines.push(("restores", text(&s["restoreFrom"]["checkpointId"])));
    }
    if !s["parent"].is_null() {
        lines.push((
            "cloned from",
            format!(
                "{} @ {}",
                text(&s["parent"]["studioId"]),
                text(&s["parent"]["checkpointId"])
            ),
        ));
    }
    if !s["url"].is_null() {
        lines.push(("url", text(&s["url"])));
    }
    for w in s["warnings"].as_array().into_iter().flatten() {
        lines.push(("warning", text(w)));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in lines {
        println!("{k:<width$}  {v}");
    }
}

pub fn connect(format: Format, link: &Value) {
    match format {
        Format::Json => json(link),
        Format::Table => println!("{}", text(&link["url"])),
    }
}

pub fn checkpoints(format: Format, list: &[Value]) {
    match format {
        Format::Json => json(&Value::Array(list.to_vec())),
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        text(&c["id"]),
                        text(&c["name"]),
                        text(&c["status"]),
                        text(&c["savedAt"]),
                        text(&c["author"]["name"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["ID", "NAME", "STATUS", "SAVED", "AUTHOR"], &rows)
            );
        }
    }
}

pub fn mounts(format: Format, value: &Value) {
    match format {
        Format::Json => json(value),
        Format::Table => print!(
            "{}",
            table(
                &["URI", "STUDIO", "SINCE"],
                &rows(&value["mounts"], |m| vec![
                    text(&m["uri"]),
                    format!(
                        "{} ({})",
                        text(&m["studio"]["name"]),
                        text(&m["studio"]["id"])
                    ),
                    text(&m["since"]),
                ]),
            )
        ),
    }
}

pub fn deleted(format: Format, id: &str) {
    match format {
        Format::Json => json(&serde_json::json!({"deleted": id})),
        Format::Table => println!("deleted {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_show_nulls_as_dashes() {
        let out = table(
            &["ID", "NAME", "ROLE"],
            &[
                vec!["ws-1".into(), "demo".into(), "owner".into()],
                vec!["ws-22".into(), text(&Value::Null), "view".into()],
            ],
        );
        assert_eq!(
            out,
            "ID     NAME  ROLE\nws-1   demo  owner\nws-22  -     view\n"
        );
    }
}
