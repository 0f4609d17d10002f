//! `edgevl convert` from the command line: a full disk (a file-size limit) and Ctrl-C leave neither
//! the output nor its temporary file; bad option combinations are refused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgevl-convert-cli-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn entries(d: &Path) -> Vec<String> {
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

/// Starts `edgevl ARGS` writing into `d`, sends `signal` once its part file exists, and returns
/// its stderr and exit code once it has ended (never successfully).
fn interrupt_once_writing(args: &[&str], d: &Path, signal: &str) -> (String, Option<i32>) {
    let child = Command::new(env!("CARGO_BIN_EXE_edgevl")).args(args).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until the temporary file exists, then interrupt.
    let t0 = Instant::now();
    while entries(d).is_empty() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!entries(d).is_empty(), "{signal}: the command never started writing");
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "{signal}: {:?}", o.status);
    (String::from_utf8_lossy(&o.stderr).into_owned(), o.status.code())
}

#[test]
fn ctrl_c_and_termination_signals_leave_nothing() {
    let src = edgevl_testdata::smollm2_hf_dir();
    // Each ends with 128 + the signal's number, as a process the signal ended (was 1 for convert).
    for (signal, code) in [("-INT", 130), ("-TERM", 143), ("-HUP", 129)] {
        let d = out_dir(&format!("signal{signal}"));
        let out = d.join("model.gguf");
        let (src, out) = (src.to_string_lossy(), out.to_string_lossy());
        let args = ["convert", &*src, "-o", &*out, "--scheme", "q4_k", "-t", "1"];
        let (stderr, status) = interrupt_once_writing(&args, &d, signal);
        assert!(stderr.contains("cancelled"), "{signal}: {stderr}");
        assert_eq!(status, Some(code), "{signal}: {stderr}");
        assert!(entries(&d).is_empty(), "{signal}: left behind: {:?}", entries(&d));
        fs::remove_dir_all(&d).unwrap();
    }
    // A command without its own handler (gen-random writes a 1.6 GB model): the part file goes too.
    let d = out_dir("signal-gen-random");
    let out = d.join("random.gguf");
    let args = ["gen-random", "--preset", "bluelm-v-3b", "--type", "q4_0", "-o", out.to_str().unwrap()];
    assert_eq!(interrupt_once_writing(&args, &d, "-TERM").1, Some(143));
    assert!(entries(&d).is_empty(), "gen-random: left behind: {:?}", entries(&d));
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
