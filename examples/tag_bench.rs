//! Tagging 300 bench CT instances against plain copies of the same files: what tagging
//! adds to the relay (target: < 10 %). Run by bench/relay.sh:
//! `cargo run --release --example tag_bench -- DIR` (DIR holds the bench CT files).

use readgate::model::Disposition as Verdict;
use readgate::tag::{self, Accountability, ContextCopy};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: tag_bench DIR")?);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .dcm files in {}", dir.display()).into());
    }
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let acc = Accountability {
        gateway_id: "gw-1".into(),
        sending_facility: "HOSP-A".into(),
        receiving_facility: "RC1".into(),
        policy_id: "jrs-2024".into(),
        policy_version: "1".into(),
        verdict: Verdict::Pass,
        reason_codes: vec![],
        evaluated_at: UNIX_EPOCH + Duration::from_secs(1_743_675_010),
        audit_ref: "readgate:gw-1:audit:1".into(),
        prior_of: None,
    };
    let order = ContextCopy {
        exam_purpose: Some("Rule out pulmonary embolism".into()),
        clinical_information: Some("Chest pain since 3 days".into()),
        requesting_physician: Some("Order^Doctor".into()),
        callback_phone: Some("000-0000-0009".into()),
    };
    let out_dir = std::env::temp_dir().join(format!("readgate-tag-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let dest = |f: &Path| out_dir.join(f.file_name().unwrap_or_default());
    let user_copy = || -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        for f in &files {
            let mut src = std::fs::File::open(f)?;
            let mut dst = std::fs::File::create(dest(f))?;
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                dst.write_all(&buf[..n])?;
            }
        }
        Ok(())
    };
    let kernel_copy = || -> std::io::Result<()> {
        for f in &files {
            std::fs::copy(f, dest(f))?;
        }
        Ok(())
    };
    let tagging = || -> std::io::Result<()> {
        for f in &files {
            let src = std::fs::File::open(f)?;
            let dst = std::fs::File::create(dest(f))?;
            tag::tag_part10_file(src, dst, &acc, &order).map_err(std::io::Error::other)?;
        }
        Ok(())
    };
    // Rounds interleave the three, so a noisy neighbour slows all of them alike.
    let runs = 9;
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..runs {
        for (i, f) in [
            &user_copy as &dyn Fn() -> std::io::Result<()>,
            &kernel_copy,
            &tagging,
        ]
        .into_iter()
        .enumerate()
        {
            let t = Instant::now();
            f()?;
            times[i].push(t.elapsed());
        }
    }
    let [user_copy, kernel_copy, tagging] = times.map(median);
    let mb = total as f64 / 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = files.len() as f64;
    println!(
        "{} CT instances, {mb:.0} MB, median of {runs}:\n  \
         copy (64 KiB buffer)    {:7.1} ms  {:6.0} MB/s\n  \
         copy (std::fs::copy)    {:7.1} ms  {:6.0} MB/s\n  \
         tag (tag_part10_file)   {:7.1} ms  {:6.0} MB/s\n  \
         tag / buffered copy = {:.3}, tag / fs::copy = {:.3}, tag cost per instance = {:.3} ms",
        files.len(),
        ms(user_copy),
        mb / user_copy.as_secs_f64(),
        ms(kernel_copy),
        mb / kernel_copy.as_secs_f64(),
        ms(tagging),
        mb / tagging.as_secs_f64(),
        tagging.as_secs_f64() / user_copy.as_secs_f64(),
        tagging.as_secs_f64() / kernel_copy.as_secs_f64(),
        (ms(tagging) - ms(user_copy)) / n,
    );
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok(())
}
