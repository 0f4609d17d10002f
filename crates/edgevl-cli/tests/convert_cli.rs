//! `edgevl convert` from the command line: a full disk (a file-size limit) and Ctrl-C leave neither
//! the output nor its temporary file; bad option combinations are refused.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgevl-convert-cli-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn entries(d: &PathBuf) -> Vec<String> {
    fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn full_disk_leaves_nothing() {
    let src = edgevl_testdata::smollm2_hf_dir();
    let d = out_dir("full");
    let out = d.join("model.gguf");
    // A 4 MB file-size limit: writes past it fail with EFBIG, as on a full disk (SIGXFSZ ignored).
    let script = format!(
        "trap '' XFSZ; ulimit -f 8192; exec '{}' convert '{}' -o '{}' --scheme q8_0 -t 2",
        env!("CARGO_BIN_EXE_edgevl"),
        src.display(),
        out.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("model.gguf") && stderr.to_lowercase().contains("too large"), "{stderr}");
    assert!(entries(&d).is_empty(), "left behind: {:?}", entries(&d));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn ctrl_c_leaves_nothing() {
    let src = edgevl_testdata::smollm2_hf_dir();
    let d = out_dir("sigint");
    let out = d.join("model.gguf");
    let child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args([
            "convert",
            &src.to_string_lossy(),
            "-o",
            &out.to_string_lossy(),
            "--scheme",
            "q4_k",
            "-t",
            "1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary file exists, then interrupt.
    let t0 = Instant::now();
    while entries(&d).is_empty() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!entries(&d).is_empty(), "the conversion never started writing");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("cancelled"), "{stderr}");
    assert!(entries(&d).is_empty(), "left behind: {:?}", entries(&d));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn llm_type_needs_bluelm_and_schemes_are_checked() {
    let src = edgevl_testdata::smollm2_hf_dir();
    let d = out_dir("opts");
    let run = |args: &[&str]| {
        let mut a = vec!["convert", src.to_str().unwrap(), "-o", d.to_str().unwrap()];
        a.extend_from_slice(args);
        let o = Command::new(env!("CARGO_BIN_EXE_edgevl")).args(&a).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run(&["--scheme", "q4_0", "--llm-type", "q4_k"])
        .contains("--llm-type goes only with --scheme bluelm"));
    assert!(run(&["--scheme", "q3_k"]).contains("unknown --scheme 'q3_k'"));
    fs::remove_dir_all(&d).unwrap();
}
