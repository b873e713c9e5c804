//! Results as a table for people (`--output table`, the default) or as the API's own
//! JSON for programs (`--output json`). A table into a pipe or a file is not padded:
//! tab-separated rows without the header line, as `gh` prints them (docs/cli.md).

use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How results are printed: `--output` and whether stdout is a terminal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    /// The API's JSON.
    Json,
    /// Columns padded to their widest cell, under a header line (a terminal).
    Table,
    /// Tab-separated cells, no header line (a pipe or a file).
    Tabs,
}

impl Style {
    pub fn choose(format: Format, stdout_is_terminal: bool) -> Style {
        match format {
            Format::Json => Style::Json,
            Format::Table if stdout_is_terminal => Style::Table,
            Format::Table => Style::Tabs,
        }
    }
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

/// Rows as `style` lays them out ([`Style::Table`] or [`Style::Tabs`]).
pub fn table(style: Style, headers: &[&str], rows: &[Vec<String>]) -> String {
    if style != Style::Table {
        return rows
            .iter()
            .map(|row| {
                let cells: Vec<String> = row.iter().map(|c| one_cell(c)).collect();
                cells.join("\t") + "\n"
            })
            .collect();
    }
    padded(headers, rows)
}

/// A cell for a tab-separated row: its tabs and line breaks as spaces.
fn one_cell(cell: &str) -> String {
    cell.replace(['\t', '\n', '\r'], " ")
}

/// Columns padded to their widest cell; the last column is not padded.
fn padded(headers: &[&str], rows: &[Vec<String>]) -> String {
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

pub fn workspaces(style: Style, value: &Value) {
    match style {
        Style::Json => json(value),
        Style::Table | Style::Tabs => print!(
            "{}",
            table(
                style,
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

pub fn templates(style: Style, value: &Value) {
    match style {
        Style::Json => json(value),
        Style::Table | Style::Tabs => print!(
            "{}",
            table(
                style,
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

pub fn studio_list(style: Style, studios: &[Value]) {
    match style {
        Style::Json => json(&Value::Array(studios.to_vec())),
        Style::Table | Style::Tabs => {
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
                    style,
                    &["ID", "NAME", "STATUS", "TEMPLATE", "COMPUTE ENV", "AUTHOR"],
                    &rows
                )
            );
        }
    }
}

pub fn studio(style: Style, s: &Value) {
    if style == Style::Json {
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
    print!("{}", fields(style, &lines));
}

/// One studio's `key value` lines: keys padded on a terminal, a tab between in a pipe.
fn fields(style: Style, lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(k, v)| match style {
            Style::Table => format!("{k:<width$}  {v}\n"),
            _ => format!("{k}\t{}\n", one_cell(v)),
        })
        .collect()
}

pub fn connect(style: Style, link: &Value) {
    match style {
        Style::Json => json(link),
        Style::Table | Style::Tabs => println!("{}", text(&link["url"])),
    }
}

pub fn checkpoints(style: Style, list: &[Value]) {
    match style {
        Style::Json => json(&Value::Array(list.to_vec())),
        Style::Table | Style::Tabs => {
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
                table(style, &["ID", "NAME", "STATUS", "SAVED", "AUTHOR"], &rows)
            );
        }
    }
}

pub fn mounts(style: Style, value: &Value) {
    match style {
        Style::Json => json(value),
        Style::Table | Style::Tabs => print!(
            "{}",
            table(
                style,
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

pub fn deleted(style: Style, id: &str) {
    match style {
        Style::Json => json(&serde_json::json!({"deleted": id})),
        Style::Table | Style::Tabs => println!("deleted {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_padded_on_a_terminal_only() {
        assert_eq!(Style::choose(Format::Table, true), Style::Table);
        assert_eq!(Style::choose(Format::Table, false), Style::Tabs);
        assert_eq!(Style::choose(Format::Json, true), Style::Json);
        assert_eq!(Style::choose(Format::Json, false), Style::Json);
    }

    #[test]
    fn tables_into_a_pipe_are_tab_separated_without_header() {
        let rows = [
            vec!["st-1".into(), "RNA-seq QC".into(), "a\tb\nc".into()],
            vec!["st-22".into(), text(&Value::Null), "".into()],
        ];
        assert_eq!(
            table(Style::Tabs, &["ID", "NAME", "X"], &rows),
            "st-1\tRNA-seq QC\ta b c\nst-22\t-\t\n"
        );
        let lines = [
            ("id", "st-1".to_string()),
            ("compute env", "ce (ce-1)".into()),
        ];
        assert_eq!(
            fields(Style::Tabs, &lines),
            "id\tst-1\ncompute env\tce (ce-1)\n"
        );
        assert_eq!(
            fields(Style::Table, &lines),
            "id           st-1\ncompute env  ce (ce-1)\n"
        );
    }

    #[test]
    fn tables_align_columns_and_show_nulls_as_dashes() {
        let out = table(
            Style::Table,
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
