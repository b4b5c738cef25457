//! Scratch: embeds the `narrative` of each JSON Lines record (export_splits output) with
//! pocket-encoder's bundled MiniLM-L3 and writes `complaint_id,e0..e383` CSV rows.
use std::io::{BufRead, Write};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = std::env::args().skip(1);
    let (inp, out) = (a.next().ok_or("in")?, a.next().ok_or("out")?);
    let enc = pocket_encoder::Encoder::new()?;
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(&inp)?).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        if let Some(t) = v["narrative"].as_str().filter(|t| !t.trim().is_empty()) {
            ids.push(v["complaint_id"].as_u64().unwrap_or(0));
            // 64 KiB cap per input.
            let t: String = t.chars().take(8000).collect();
            texts.push(t);
        }
    }
    let t0 = std::time::Instant::now();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for (chunk_ids, chunk) in ids.chunks(256).zip(texts.chunks(256)) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let vecs = enc.embed(&refs)?;
        for (id, v) in chunk_ids.iter().zip(vecs) {
            write!(f, "{id}")?;
            for x in v {
                write!(f, ",{x}")?;
            }
            writeln!(f)?;
        }
    }
    eprintln!(
        "embedded {} narratives in {:.1} s",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
