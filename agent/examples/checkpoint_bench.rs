//! The checkpoint benchmark (docs/performance.md, "Checkpoints"): a workspace of
//! `--size-mib` (1024) of incompressible data in 16 MiB files is saved once; then
//! `--changed-mib` (10) change after the last snapshot, and the final save is timed with
//! the bytes it uploads; then a fresh restore of everything is timed. Against the S3
//! that AWS_ENDPOINT_URL points at: `infra/bench-checkpoint.sh` starts the emulator.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use studios_agent::checkpoint::{restore, save, snapshot, Index, Layout, Stats};
use studios_agent::objects::{Objects, S3Objects};

const FILE_MIB: usize = 16;
const MIB: usize = 1 << 20;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Incompressible, never repeating bytes (xorshift64*).
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        let v = seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn row(what: &str, s: &Stats) {
    println!(
        "| {what} | {:.2} s | {:.1} MiB | {:.1} MiB | {} |",
        s.elapsed.as_secs_f64(),
        s.read_bytes as f64 / MIB as f64,
        s.transferred_bytes as f64 / MIB as f64,
        s.transferred_chunks
    );
}

#[tokio::main]
async fn main() {
    let size = arg("--size-mib", 1024);
    let changed = arg("--changed-mib", 10);
    let sdk = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let _ = s3.create_bucket().bucket("bench").send().await;
    let objects: Arc<dyn Objects> = Arc::new(S3Objects::new(&sdk));
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; FILE_MIB * MIB];
    let started = Instant::now();
    for i in 0..size.div_ceil(FILE_MIB) {
        fill(&mut buf, &mut seed);
        std::fs::write(ws.join(format!("data-{i:03}.bin")), &buf).unwrap();
    }
    println!(
        "workspace: {size} MiB in {} files of {FILE_MIB} MiB (written in {:.1} s)\n",
        size.div_ceil(FILE_MIB),
        started.elapsed().as_secs_f64()
    );
    let layout = |cp: &str| {
        Layout::from_save_uri(&format!(
            "s3://bench/work/.studios/st-bench/checkpoints/{cp}/"
        ))
        .unwrap()
    };
    let mut index = Index::default();
    println!("| step | time | read | uploaded | chunks uploaded |");
    println!("|---|---|---|---|---|");
    let s = save(objects.clone(), &ws, &layout("cp-1"), &mut index, &[])
        .await
        .unwrap();
    row("first save (everything new)", &s);
    let (_, s) = snapshot(objects.clone(), &ws, &layout("cp-2"), &mut index, &[])
        .await
        .unwrap();
    row("snapshot, nothing changed", &s);

    // `changed` MiB rewritten in place, not chunk-aligned (starts 3 MiB into a file).
    let mut data = vec![0u8; changed * MIB];
    fill(&mut data, &mut seed);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(ws.join("data-000.bin"))
            .unwrap();
        f.seek(SeekFrom::Start(3 * MIB as u64)).unwrap();
        f.write_all(&data[..(changed * MIB).min(FILE_MIB * MIB - 3 * MIB)])
            .unwrap();
    }
    let s = save(objects.clone(), &ws, &layout("cp-2"), &mut index, &[])
        .await
        .unwrap();
    row(
        &format!("final save, {changed} MiB rewritten inside a file"),
        &s,
    );

    // `changed` MiB as a new file.
    fill(&mut data, &mut seed);
    std::fs::write(ws.join("new.bin"), &data).unwrap();
    let s = save(objects.clone(), &ws, &layout("cp-3"), &mut index, &[])
        .await
        .unwrap();
    row(&format!("final save, a new {changed} MiB file"), &s);

    let fresh = dir.path().join("restored");
    let (_, s) = restore(
        objects.clone(),
        &studios_agent::checkpoint::Source {
            uri: "s3://bench/work/.studios/st-bench/checkpoints/cp-3/",
            manifest_sha256: None,
        },
        &fresh,
    )
    .await
    .unwrap();
    row("restore of the last checkpoint (all of it)", &s);
    assert_eq!(
        std::fs::read(fresh.join("new.bin")).unwrap(),
        std::fs::read(ws.join("new.bin")).unwrap()
    );
    same_tree(&ws, &fresh);
}

fn same_tree(a: &Path, b: &Path) {
    for entry in std::fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        let other = b.join(entry.file_name());
        assert_eq!(
            std::fs::metadata(entry.path()).unwrap().len(),
            std::fs::metadata(&other).unwrap().len(),
            "{}",
            other.display()
        );
    }
}
